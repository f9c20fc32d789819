"""Starting and reading runs."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from opentelemetry.context import attach, detach
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from agents import manifest
from api.auth import Principal
from api.errors import (
    ActiveRunsLimit,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    Invalid,
    NotFound,
    RunFinished,
    Unavailable,
)
from api.schemas import Page, RunCreate, RunRead, UsageRead
from api.services import pagination
from approvals import audit
from countersign import telemetry
from countersign.db import utcnow
from countersign.hashing import canonical_hash
from countersign.models import Run
from countersign.repositories import runs
from countersign.settings import Settings
from workers.contracts import Budget, RunInput
from workers.workflows.run import AgentRunWorkflow


def to_read(run: Run) -> RunRead:
    """The run as the API shows it."""
    return RunRead(
        id=run.id,
        agent=run.agent,
        status=run.status,
        input=run.input,
        output=run.output,
        error=run.error,
        trace_id=run.trace_id,
        requested_by=run.requested_by,
        created_at=run.created_at,
        updated_at=run.updated_at,
        usage=UsageRead(
            input_tokens=run.input_tokens,
            output_tokens=run.output_tokens,
            model_calls=run.model_calls,
            cost_usd=run.cost_usd,
        ),
    )


async def start_run(
    s: AsyncSession,
    reads: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    who: Principal,
    body: RunCreate,
    idem_key: str | None,
) -> tuple[RunRead, bool]:
    """Record the run and start its workflow; the same Idempotency-Key and body return the same run.

    ``reads`` opens read-only sessions (no write lock on SQLite).
    """
    agent = manifest.manifest(body.agent)
    if agent is None:
        raise NotFound(f"agent: no agent named {body.agent!r}")
    if who.agents is not None and body.agent not in who.agents:
        raise Forbidden(f"agent: this key may not trigger {body.agent!r}")
    try:
        agent.validate_input(body.input)
    except ValidationError as e:
        errors = [
            {"field": ".".join(["input", *(str(p) for p in err["loc"])]), "message": err["msg"]}
            for err in e.errors(include_url=False)
        ]
        raise Invalid("; ".join(f"{x['field']}: {x['message']}" for x in errors), errors=errors) from e
    fingerprint: dict[str, Any] = {"agent": body.agent, "input": body.input}
    if body.budget is not None:
        fingerprint["budget"] = body.budget.model_dump()
    request_hash = canonical_hash(fingerprint)
    if idem_key is not None:
        if not 1 <= len(idem_key) <= 200:
            raise Invalid("Idempotency-Key: must be 1 to 200 characters")
        # Looked up on a read session first: a new key (the usual case) then costs the write transaction,
        # which on SQLite holds the one write lock, no statement. A key used meanwhile is caught by the
        # unique constraint on insert.
        async with reads() as r:
            seen = await runs.by_idempotency_key(r, who.tenant_id, idem_key) is not None
        if seen:
            return await _again(s, temporal, settings, who, body, idem_key, request_hash)
    await _check_active_cap(s, settings, who)
    # The run's trace is the trigger request's trace; its invoke_agent span id is reserved now and recorded
    # when the run ends, so every Temporal span of the run nests under it.
    ids = telemetry.current_ids()
    run = Run(
        trace_id=ids[0] if ids else None,
        span_id=telemetry.new_span_id() if ids else None,
        parent_span_id=ids[1] if ids else None,
        id=str(uuid.uuid4()),
        tenant_id=who.tenant_id,
        agent=body.agent,
        status="running",
        input=body.input,
        requested_by=who.id,
        idempotency_key=idem_key,
        request_hash=request_hash,
    )
    try:
        await runs.add(s, run)
    except IntegrityError as e:
        # The same key, recorded by a request that ran at the same time: answered as a repeat of it.
        await s.rollback()
        if idem_key is None:
            raise
        try:
            return await _again(s, temporal, settings, who, body, idem_key, request_hash)
        except NotFound:
            raise Conflict("Idempotency-Key: a request with this key is in progress; retry it") from e
    await audit.append(
        s,
        audit.NewEvent(
            id=f"{run.id}:started",
            type="run.started",
            actor=who.id,
            data={"status": "running", "agent": run.agent},
            tenant_id=run.tenant_id,
            run_id=run.id,
            trace_id=run.trace_id,
        ),
        fresh=True,  # the run's id was made just now: no event of it can be in the ledger
    )
    await _start(s, temporal, settings, run, _budget(settings, body))
    return to_read(run), True


async def _again(
    s: AsyncSession,
    temporal: Client,
    settings: Settings,
    who: Principal,
    body: RunCreate,
    idem_key: str,
    request_hash: str,
) -> tuple[RunRead, bool]:
    """A repeated request: the run recorded under its Idempotency-Key (409 for a different body)."""
    existing = await runs.by_idempotency_key(s, who.tenant_id, idem_key)
    if existing is None:
        raise NotFound("Idempotency-Key: no run recorded under this key")
    if existing.request_hash != request_hash:
        raise IdempotencyConflict("Idempotency-Key: already used for a different request")
    if existing.status == "running" or _not_started(existing):
        # An earlier attempt may have recorded the run and failed to start its workflow: the retry starts it
        # now (the workflow id makes this a no-op when it is already running).
        await _start(s, temporal, settings, existing, _budget(settings, body))
    return to_read(existing), False


def _budget(settings: Settings, body: RunCreate) -> Budget:
    return body.budget or Budget(
        max_model_calls=settings.budget_max_model_calls,
        max_tokens=settings.budget_max_tokens,
        max_cost_usd=settings.budget_max_cost_usd,
    )


def _not_started(run: Run) -> bool:
    return run.status == "failed" and (run.error or {}).get("reason") == NOT_STARTED


async def _start(s: AsyncSession, temporal: Client, settings: Settings, run: Run, budget: Budget) -> None:
    """Commit the run's row, then start its workflow (id ``run-<id>``, so a repeated start is a no-op).

    No transaction is held across the RPC. When Temporal cannot be reached the row is marked failed with
    reason ``not_started`` (a retry with the same Idempotency-Key starts it) and the caller gets 503.
    """
    if _not_started(run):
        run.status, run.error = "running", None
    await s.commit()
    inp = RunInput(
        run_id=run.id,
        tenant_id=run.tenant_id,
        agent=run.agent,
        input=run.input,
        requested_by=run.requested_by,
        trace_id=run.trace_id,
        span_id=run.span_id,
        parent_span_id=run.parent_span_id,
        budget=budget,
    )
    token = attach(telemetry.context_of(run.trace_id, run.span_id)) if run.trace_id and run.span_id else None
    try:
        await temporal.start_workflow(
            AgentRunWorkflow.run,
            inp,
            id=f"run-{run.id}",
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        pass
    except RPCError as e:
        run.status, run.error = "failed", {"reason": NOT_STARTED, "message": "Temporal was unreachable"}
        run.updated_at = utcnow()
        await s.commit()
        raise Unavailable(
            f"the run was recorded but could not be started ({e.status.name if e.status else 'error'}); "
            "retry with the same Idempotency-Key",
            headers={"Retry-After": "5"},
        ) from e
    finally:
        if token is not None:
            detach(token)


async def get_run(s: AsyncSession, who: Principal, run_id: str) -> Run:
    """The run, if it belongs to the principal's tenant (another tenant's id is a 404, not a 403)."""
    run = await runs.get(s, run_id)
    if run is None or run.tenant_id != who.tenant_id:
        raise NotFound(f"run {run_id} not found")
    return run


async def list_runs(
    s: AsyncSession,
    who: Principal,
    *,
    status: str | None,
    agent: str | None,
    cursor: str | None,
    limit: int,
    created_from: dt.datetime | None = None,
    created_until: dt.datetime | None = None,
) -> Page[RunRead]:
    """The tenant's runs, newest first (optionally those created in ``[created_from, created_until)``)."""
    found = await runs.newest(
        s,
        who.tenant_id,
        status=status,
        agent=agent,
        created_from=created_from,
        created_until=created_until,
        after=pagination.decode(cursor),
        limit=limit + 1,
    )
    rows, nxt = pagination.page(found, limit)
    return Page[RunRead](items=[to_read(r) for r in rows], next_cursor=nxt)


ACTIVE = ("running", "awaiting_approval")
# error reason of a run whose workflow could not be started; a retry with the same Idempotency-Key starts it
NOT_STARTED = "not_started"
TERMINAL = ("completed", "failed", "cancelled")


async def _check_active_cap(s: AsyncSession, settings: Settings, who: Principal) -> None:
    """Refuse a new run while the tenant has ``max_active_runs_per_tenant`` running or paused ones.

    The tenant row is locked first (PostgreSQL), so concurrent starts of one tenant count one after the
    other and the cap holds exactly; SQLite serialises writers anyway.
    """
    cap = settings.max_active_runs_per_tenant
    if cap <= 0:
        return
    await runs.lock_tenant(s, who.tenant_id)
    active = await runs.count_in(s, who.tenant_id, ACTIVE)
    if active >= cap:
        raise ActiveRunsLimit(
            f"the tenant has {active} active runs (running or awaiting approval); the cap is {cap}: "
            "wait for one to finish or cancel one"
        )


async def cancel_run(s: AsyncSession, temporal: Client, who: Principal, run_id: str) -> RunRead:
    """Request cancellation of the run's workflow; the workflow cancels its pending approvals and records
    the run as ``cancelled``. Asking again while it is being cancelled is accepted; a finished run is a 409.
    """
    run = await get_run(s, who, run_id)
    if run.status in TERMINAL:
        raise RunFinished(f"run {run_id} is already {run.status}")
    await s.commit()  # no transaction across the RPC
    try:
        await temporal.get_workflow_handle(f"run-{run.id}").cancel()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise RunFinished(f"run {run_id} is no longer running") from e
        raise
    return to_read(run)
