"""The chaos suite: the whole stack as separate processes, hurt while people approve gated runs.

Faults, in one session: workers SIGKILLed at random moments (and started again, as a supervisor would), the
Temporal dev server restarted mid-run on its persistent database file, the database unavailable for a few
seconds (PostgreSQL behind a proxy that drops every connection; SQLite held under an exclusive lock), 50
concurrent decisions on one request, and the API used while Temporal is down. Then the invariants are read
from the database and printed as figures; any violated one makes the exit code 1.

``make chaos`` runs it on SQLite and PostgreSQL at full size; the test suite runs a reduced version.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from chaos.proxy import CuttableProxy

TENANT = "chaos"
APPROVER_ROLES = ["approver:finance", "approver:support"]
PG_ADMIN = os.environ.get("COUNTERSIGN_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class Size:
    """How much chaos: gated runs, worker kills, concurrent decisions on one request."""

    runs: int = 100
    kills: int = 10
    decisions: int = 50
    outage_seconds: float = 6.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A process of the stack, started again by the supervisor when it dies (unless held down)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.held = False
        self.starts = 0
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        out = self.log.open("ab")
        try:
            return subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        finally:
            out.close()

    def revive(self) -> None:
        """Start it again if it died and is not held down."""
        if not self.held and self.proc.poll() is not None:
            self.proc = self._spawn()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM and wait (a clean shutdown)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Figures:
    """What happened, and what the invariants found."""

    backend: str
    started: list[str] = field(default_factory=list)
    kills: int = 0
    temporal_restarts: int = 0
    outages: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    concurrent: Counter[int] = field(default_factory=Counter)
    down_answers: dict[str, int] = field(default_factory=dict)
    invariants: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (found, allowed)
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)

    def ok(self) -> bool:
        """Every invariant holds."""
        return all(found <= allowed for found, allowed in self.invariants.values())


class Chaos:
    """One chaos session against one database backend."""

    def __init__(self, backend: str, size: Size, root: Path, seed: int = 7) -> None:
        self.backend, self.size, self.root = backend, size, root
        self.rng = random.Random(seed)
        self.figures = Figures(backend)
        self.temporal_port, self.api_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.proxy: CuttableProxy | None = None
        self.children: list[Child] = []
        self.temporal: Child | None = None
        self.keys: dict[str, str] = {}
        self.pg_name = ""
        self.stopping = False

    # --- set-up -----------------------------------------------------------------------------------------

    async def database(self) -> tuple[str, str]:
        """(URL the stack uses, URL the driver checks with): on PostgreSQL the stack uses the proxy."""
        if self.backend == "sqlite":
            url = f"sqlite+aiosqlite:///{self.root / 'countersign.db'}"
            return url, url
        from countersign.db import make_engine

        self.pg_name = f"cs_chaos_{uuid.uuid4().hex[:10]}"
        admin = make_engine(PG_ADMIN)
        async with admin.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                text(f'CREATE DATABASE "{self.pg_name}"')
            )
        await admin.dispose()
        base = PG_ADMIN.rsplit("/", 1)[0]
        host_port = base.rsplit("@", 1)[1]
        host, port = host_port.split(":")
        self.proxy = CuttableProxy(host, int(port))
        proxy_port = free_port()
        await self.proxy.start(proxy_port)
        through = base.rsplit("@", 1)[0] + f"@127.0.0.1:{proxy_port}/{self.pg_name}"
        return through, f"{base}/{self.pg_name}"

    def start_temporal(self) -> None:
        from cli.dev import temporal_argv

        argv = temporal_argv(self.temporal_port, free_port(), self.root / "temporal.db", "error")
        if self.temporal is None:
            self.temporal = Child("temporal", argv, dict(os.environ), self.root / "temporal.log")
        else:
            self.temporal.held = False
            self.temporal.revive()

    async def wait_temporal(self) -> None:
        from temporalio.client import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                await Client.connect(f"127.0.0.1:{self.temporal_port}")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def prepare(self, url: str) -> None:
        from api.auth import create_key, ensure_tenant
        from countersign.db import make_engine, session_factory
        from countersign.migrate import upgrade_async
        from tools.business import BusinessStore
        from tools.demo_data import seed

        await upgrade_async(url)
        store = BusinessStore.from_url(url)
        await seed(store, TENANT)
        await store.engine.dispose()
        engine = make_engine(url)
        async with session_factory(engine)() as s, s.begin():
            await ensure_tenant(s, TENANT)
            for name, roles in {
                "trigger": ["trigger"],
                "alice": APPROVER_ROLES,
                "bob": APPROVER_ROLES,
                "auditor": ["auditor"],
            }.items():
                _, self.keys[name] = await create_key(s, tenant_id=TENANT, name=name, roles=roles)
        await engine.dispose()

    def start_stack(self, url: str) -> None:
        env = {
            **os.environ,
            "COUNTERSIGN_DATA_DIR": str(self.root),
            "COUNTERSIGN_DATABASE_URL": url,
            "COUNTERSIGN_BUSINESS_DATABASE_URL": url,
            "COUNTERSIGN_TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
            "COUNTERSIGN_TASK_QUEUE": "chaos",
            "COUNTERSIGN_DEMO_SANDBOX": "true",
            "COUNTERSIGN_RUNS_PER_MINUTE": "0",
            "COUNTERSIGN_MAX_ACTIVE_RUNS_PER_TENANT": "0",
            "COUNTERSIGN_ACTIVITY_HEARTBEAT_SECONDS": "2",
            "COUNTERSIGN_TOOL_TIMEOUT_SECONDS": "10",
        }
        py = sys.executable
        for n, extra in enumerate(([], ["--no-webhooks"])):
            argv = [py, "-m", "cli", "worker", *extra]
            self.children.append(Child(f"worker {n + 1}", argv, env, self.root / f"worker-{n + 1}.log"))
        api = [py, "-m", "uvicorn", "--factory", "api.app:app_from_env", "--port", str(self.api_port)]
        self.children.append(Child("api", [*api, "--log-level", "warning"], env, self.root / "api.log"))

    async def supervise(self) -> None:
        """Start again whatever died, as `countersign dev` or a process manager would."""
        while not self.stopping:
            for child in [*self.children, *([self.temporal] if self.temporal else [])]:
                child.revive()
            await asyncio.sleep(0.2)

    # --- the people and systems using it ----------------------------------------------------------------

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def call(
        self, http: httpx.AsyncClient, method: str, path: str, who: str, *, tries: int = 600, **kw: Any
    ) -> httpx.Response:
        """A request retried as a careful client retries: on 503, 500s from a dying process, and refused
        connections (the API restarting), with the same body and idempotency key."""
        last: httpx.Response | None = None
        for _ in range(tries):
            try:
                last = await http.request(
                    method, path, headers={**self.auth(who), **kw.pop("headers", {})}, **kw
                )
            except httpx.TransportError:
                await asyncio.sleep(0.25)
                continue
            self.figures.answers[f"{method} {path.split('/')[2]} {last.status_code}"] += 1
            if last.status_code not in (502, 503, 504, 500):
                return last
            await asyncio.sleep(0.25)
        assert last is not None, f"{method} {path}: the API never answered"
        return last

    async def start_run(self, http: httpx.AsyncClient, ticket: str) -> str:
        body = {"agent": "support_drafting", "input": {"ticket_id": ticket}}
        key = str(uuid.uuid4())
        r = await self.call(http, "POST", "/v1/runs", "trigger", json=body, headers={"Idempotency-Key": key})
        assert r.status_code in (200, 201), r.text
        run_id = str(r.json()["id"])
        self.figures.started.append(run_id)
        return run_id

    async def approve_all(self, http: httpx.AsyncClient, runs: set[str], done: asyncio.Event) -> None:
        """Approvers at work: every pending request of these runs is approved, by Alice or Bob."""
        decided: set[str] = set()
        while not done.is_set():
            page = await self.call(http, "GET", "/v1/approvals?status=pending&limit=100", "alice")
            items = [
                i for i in page.json().get("items", []) if i["run_id"] in runs and i["id"] not in decided
            ]
            for item in items:
                who = self.rng.choice(["alice", "bob"])
                body = {"action": "approve", "arguments_hash": item["arguments_hash"]}
                r = await self.call(http, "POST", f"/v1/approvals/{item['id']}/decisions", who, json=body)
                if r.status_code in (200, 201, 409):
                    decided.add(item["id"])
            await asyncio.sleep(0.2)

    async def wait_finished(self, http: httpx.AsyncClient, runs: list[str], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        status: dict[str, str] = {}
        while time.monotonic() < deadline:
            for rid in runs:
                if status.get(rid) in TERMINAL:
                    continue
                r = await self.call(http, "GET", f"/v1/runs/{rid}", "auditor")
                status[rid] = str(r.json().get("status"))
            if all(s in TERMINAL for s in status.values()):
                break
            await asyncio.sleep(0.5)
        return status

    # --- faults -----------------------------------------------------------------------------------------

    async def killer(self, until: asyncio.Event) -> None:
        """SIGKILL a random worker at random moments, ``size.kills`` times."""
        workers = [c for c in self.children if c.name.startswith("worker")]
        while self.figures.kills < self.size.kills and not until.is_set():
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))
            victim = self.rng.choice(workers)
            if victim.proc.poll() is None:
                await asyncio.to_thread(victim.kill)
                self.figures.kills += 1

    async def restart_temporal(self) -> None:
        assert self.temporal is not None
        self.temporal.held = True
        await asyncio.to_thread(self.temporal.stop)
        self.start_temporal()
        await self.wait_temporal()
        self.figures.temporal_restarts += 1

    async def outage(self) -> None:
        """The database is unavailable for a few seconds."""
        seconds = self.size.outage_seconds
        if self.proxy is not None:
            await self.proxy.cut(seconds)
        else:
            # Longer than the busy timeout: writers get "database is locked" until it is released.
            path = str(self.root / "countersign.db")
            await asyncio.to_thread(_hold_sqlite, path, seconds)
        self.figures.outages += 1

    async def concurrent_decisions(self, http: httpx.AsyncClient) -> str:
        """``size.decisions`` different decisions on one request at once: exactly one may win."""
        rid = await self.start_run(http, "T-1002")
        item: dict[str, Any] = {}
        while not item:
            page = await self.call(http, "GET", f"/v1/approvals?status=pending&run_id={rid}", "alice")
            item = next(iter(page.json().get("items", [])), {})
            await asyncio.sleep(0 if item else 0.1)
        bodies = [
            {"action": "reject", "reason": f"no {i}", "arguments_hash": item["arguments_hash"]}
            if i % 2
            else {"action": "approve", "reason": f"yes {i}", "arguments_hash": item["arguments_hash"]}
            for i in range(self.size.decisions)
        ]
        answers = await asyncio.gather(
            *(
                self.call(
                    http, "POST", f"/v1/approvals/{item['id']}/decisions", "alice" if i % 3 else "bob", json=b
                )
                for i, b in enumerate(bodies)
            )
        )
        self.figures.concurrent.update(a.status_code for a in answers)
        return rid

    async def temporal_down(self, http: httpx.AsyncClient) -> str:
        """The API while Temporal is down: starts, decisions and cancels answer 503, reads still work; the
        start retried with its idempotency key once Temporal is back runs to completion."""
        pending_run = await self.start_run(http, "T-1002")
        item: dict[str, Any] = {}
        while not item:
            page = await self.call(http, "GET", f"/v1/approvals?status=pending&run_id={pending_run}", "alice")
            item = next(iter(page.json().get("items", [])), {})
            await asyncio.sleep(0 if item else 0.1)
        assert self.temporal is not None
        self.temporal.held = True
        await asyncio.to_thread(self.temporal.stop)
        key = str(uuid.uuid4())
        body = {"agent": "support_drafting", "input": {"ticket_id": "T-1001"}}
        h = {**self.auth("trigger"), "Idempotency-Key": key}
        probes = {
            "start": await http.post("/v1/runs", json=body, headers=h, timeout=60),
            "decide": await http.post(
                f"/v1/approvals/{item['id']}/decisions",
                json={"action": "approve", "arguments_hash": item["arguments_hash"]},
                headers=self.auth("bob"),
                timeout=60,
            ),
            "cancel": await http.post(
                f"/v1/runs/{pending_run}/cancel", headers=self.auth("trigger"), timeout=60
            ),
            "read": await http.get(f"/v1/runs/{pending_run}", headers=self.auth("auditor"), timeout=60),
        }
        self.figures.down_answers = {k: r.status_code for k, r in probes.items()}
        wrong = {
            k: r.status_code for k, r in probes.items() if r.status_code != (200 if k == "read" else 503)
        }
        no_retry_after = [
            k for k, r in probes.items() if r.status_code == 503 and "retry-after" not in r.headers
        ]
        self.figures.invariants["wrong answers while Temporal is down"] = (
            len(wrong) + len(no_retry_after),
            0,
        )
        self.start_temporal()
        await self.wait_temporal()
        self.figures.temporal_restarts += 1
        r = await self.call(http, "POST", "/v1/runs", "trigger", json=body, headers={"Idempotency-Key": key})
        self.figures.started.append(str(r.json()["id"]))
        await self.call(
            http,
            "POST",
            f"/v1/approvals/{item['id']}/decisions",
            "bob",
            json={"action": "approve", "arguments_hash": item["arguments_hash"]},
        )
        return pending_run

    # --- the whole session ------------------------------------------------------------------------------

    async def run(self) -> Figures:
        url, check_url = await self.database()
        self.start_temporal()
        await self.wait_temporal()
        await self.prepare(check_url)
        self.start_stack(url)
        supervisor = asyncio.create_task(self.supervise())
        try:
            async with httpx.AsyncClient(base_url=self.api, timeout=30) as http:
                clock = time.monotonic()

                def lap(name: str) -> None:
                    nonlocal clock
                    self.figures.phases[name] = time.monotonic() - clock
                    clock = time.monotonic()

                await self.call(http, "GET", "/v1/healthz", "auditor", tries=2400)
                lap("start-up")
                await self.gated_runs(http)
                lap("gated runs")
                await self.concurrent_decisions(http)
                lap("concurrent decisions")
                await self.temporal_down(http)
                lap("Temporal down")
                status = await self.wait_finished(http, self.figures.started, timeout=600)
                lap("the rest")
                self.figures.notes.append(f"run status: {dict(Counter(status.values()))}")
        finally:
            self.stopping = True
            supervisor.cancel()
            await asyncio.gather(*(asyncio.to_thread(c.stop) for c in self.children))
            if self.temporal is not None:
                await asyncio.to_thread(self.temporal.stop)
        await self.check(check_url)
        if self.proxy is not None:
            await self.proxy.close()
        return self.figures

    async def gated_runs(self, http: httpx.AsyncClient) -> list[str]:
        n = self.size.runs
        runs: list[str] = []
        started = set[str]()
        done = asyncio.Event()
        approver = asyncio.create_task(self.approve_all(http, started, done))
        killer = asyncio.create_task(self.killer(done))
        try:
            for i in range(n):
                rid = await self.start_run(http, "T-1002")
                runs.append(rid)
                started.add(rid)
                if i == n // 3:
                    await self.restart_temporal()
                if i == (2 * n) // 3:
                    await self.outage()
            status = await self.wait_finished(http, runs, timeout=600)
            if not all(s in TERMINAL for s in status.values()):
                self.figures.notes.append(f"gated runs not finished: {Counter(status.values())}")
        finally:
            done.set()
            await asyncio.gather(approver, killer, return_exceptions=True)
        return runs

    # --- invariants -------------------------------------------------------------------------------------

    async def check(self, url: str) -> None:
        from approvals.audit import verify
        from countersign.db import make_engine, session_factory

        engine = make_engine(url)
        inv = self.figures.invariants
        started = self.figures.started
        async with session_factory(engine)() as s:
            rows = (
                await s.execute(
                    text("SELECT id, status, error FROM runs WHERE tenant_id = :t"), {"t": TENANT}
                )
            ).all()
            by_id = {r[0]: (r[1], r[2]) for r in rows}
            inv["lost runs (started, not finished)"] = (
                sum(1 for r in started if by_id.get(r, ("?",))[0] not in TERMINAL),
                0,
            )
            unexplained = [
                r
                for r in started
                if by_id.get(r, ("?", None))[0] != "completed"
                and not (by_id.get(r, ("?", None))[1] or {}).get("reason")
            ]
            inv["unfinished runs without a stated reason"] = (len(unexplained), 0)
            dupes = await s.scalar(
                text(
                    "SELECT count(*) FROM (SELECT run_id FROM effects WHERE tool = 'issue_refund' "
                    "GROUP BY run_id HAVING count(*) > 1) AS d"
                )
            )
            inv["duplicate effects (runs with more than one refund)"] = (int(dupes or 0), 0)
            unapproved = await s.scalar(
                text(
                    "SELECT count(*) FROM effects e WHERE e.tool = 'issue_refund' AND NOT EXISTS ("
                    "SELECT 1 FROM approval_decisions d JOIN approval_requests r ON r.id = d.request_id "
                    "WHERE r.id = e.idempotency_key AND r.status = 'approved' "
                    "AND d.action IN ('approve', 'edit') AND d.created_at <= e.created_at)"
                )
            )
            inv["effects without a recorded approval"] = (int(unapproved or 0), 0)
            outcomes = (
                await s.execute(
                    text(
                        "SELECT r.id, r.status, r.quorum, count(d.id) FROM approval_requests r "
                        "LEFT JOIN approval_decisions d ON d.request_id = r.id WHERE r.tenant_id = :t "
                        "GROUP BY r.id, r.status, r.quorum"
                    ),
                    {"t": TENANT},
                )
            ).all()
            bad = [
                o
                for o in outcomes
                if (o[1] == "approved" and o[3] != o[2])
                or (o[1] == "rejected" and o[3] != 1)
                or (o[1] in ("pending", "cancelled", "expired") and o[3] != 0)
            ]
            inv["requests without exactly one outcome"] = (len(bad), 0)
            refunds = await s.scalar(text("SELECT count(*) FROM effects WHERE tool = 'issue_refund'"))
            self.figures.notes.append(f"refunds executed: {refunds}; approval requests: {len(outcomes)}")
            chain = await verify(s)
            inv["audit verify failures"] = (0 if chain.ok else 1, 0)
            self.figures.notes.append(
                f"ledger: {chain.checked} events, verify {'OK' if chain.ok else chain.problem}"
            )
        won = self.figures.concurrent.get(201, 0)
        inv[f"winners among {self.size.decisions} concurrent decisions (must be 1)"] = (abs(won - 1), 0)
        await engine.dispose()
        if self.pg_name:
            admin = make_engine(PG_ADMIN)
            async with admin.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
                )
            await admin.dispose()


def _hold_sqlite(path: str, seconds: float) -> None:
    """Hold SQLite's write lock (in WAL mode, an exclusive transaction blocks every writer)."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        threading.Event().wait(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def report(f: Figures, size: Size) -> str:
    """The figures as text."""
    lines = [
        f"chaos on {f.backend}: {len(f.started)} runs ({size.runs} gated), {f.kills} worker SIGKILLs, "
        f"{f.temporal_restarts} Temporal restarts, {f.outages} database outages of "
        f"{size.outage_seconds:.0f} s",
        f"  {size.decisions} concurrent decisions on one request: {dict(sorted(f.concurrent.items()))}",
        f"  while Temporal was down: {f.down_answers}",
        *(f"  {n}" for n in f.notes),
        "  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in f.phases.items()),
        "  invariants:",
        *(
            f"    {'ok  ' if found <= allowed else 'FAIL'} {name}: {found}"
            for name, (found, allowed) in f.invariants.items()
        ),
    ]
    return "\n".join(lines)


async def session(backend: str, size: Size, root: Path | None = None) -> Figures:
    """One chaos session in a fresh directory; returns its figures."""
    with contextlib.ExitStack() as stack:
        where = root or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"chaos-{backend}-")))
        return await Chaos(backend, size, where).run()


def main() -> int:
    """``python -m chaos [--backend sqlite|postgres|both] [--runs N] [--kills N] [--decisions N]``."""
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--decisions", type=int, default=50)
    a = p.parse_args()
    size = Size(runs=a.runs, kills=a.kills, decisions=a.decisions)
    ok = True
    for backend in ["sqlite", "postgres"] if a.backend == "both" else [a.backend]:
        figures = asyncio.run(session(backend, size))
        print(report(figures, size), flush=True)
        ok &= figures.ok()
    return 0 if ok else 1
