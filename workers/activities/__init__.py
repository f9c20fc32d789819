"""Activities that write the database projection and the ledger; every write is an idempotent upsert."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from agents.graph import LedgerEntry, RunContext
from approvals import audit
from approvals.models import ApprovalDecision, ApprovalRequest
from approvals.repositories import approvals, policy_calls
from approvals.repositories import webhooks as webhook_rows
from countersign import telemetry
from countersign.db import locks_on_begin, read_only, utcnow
from countersign.models import Run
from countersign.repositories import runs
from workers.activities.webhooks import record_deliveries, start_deliveries
from workers.contracts import GatedRequest, OpenRequests, RequestChange, RunInput, StatusUpdate, Usage
from workers.webhook_contracts import WebhookEvent, webhook_task_queue
from workers.workflows.webhooks import run_data

log = logging.getLogger("countersign.workers")
_RUN_END = uuid.UUID("0b7c1f52-3d8e-4a60-9c21-6f4e8a2d5b93")


def _record_usage(run: Run, usage: Usage) -> None:
    run.input_tokens, run.output_tokens = usage.input_tokens, usage.output_tokens
    run.model_calls, run.cost_usd = usage.model_calls, round(usage.cost_usd, 6)


class LedgerSink:
    """The agents' event sink: writes a node's events to the audit ledger in one transaction, once per id."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy_call_retention: dt.timedelta | None = None,
        console_url: str = "",
    ) -> None:
        self.sessions, self.console_url = sessions, console_url
        self.retention = policy_call_retention or dt.timedelta(days=90)
        self._pruned_at: dt.datetime | None = None

    async def __call__(
        self, ctx: RunContext, events: Sequence[LedgerEntry], end: dict[str, Any] | None = None
    ) -> None:
        if not events and end is None:
            return
        trace_id = telemetry.trace_id_hex()
        now = utcnow()
        prune = self._pruned_at is None or now - self._pruned_at > dt.timedelta(hours=1)
        deliveries: list[str] = []
        async with self.sessions() as session, session.begin():
            if prune and any(e.replay is not None for e in events):
                self._pruned_at = now
                await policy_calls.prune(session, now - self.retention)
            judged = [e.replay for e in events if e.replay is not None]
            # Where the ledger's head is a row lock (PostgreSQL) the judged calls go first, so nothing else is
            # written while it is held; where the first statement locks the database (SQLite) they go last,
            # pipelined behind the ledger's writes (one trip fewer while the lock is held).
            calls_first = bool(judged) and not locks_on_begin(session)
            if calls_first:
                await policy_calls.add(session, judged)
            actor = f"agent:{ctx['agent']}"
            ledger = [
                audit.NewEvent(
                    id=e.id,
                    type=e.type,
                    actor=actor,
                    data=e.data,
                    tenant_id=ctx["tenant_id"],
                    run_id=ctx["run_id"],
                    trace_id=trace_id,
                )
                for e in events
            ]
            if end is not None:
                # The answer ends the run: its end is recorded here, after the turn's events, and the
                # workflow writes none (a transaction and a local activity fewer per run).
                deliveries = await write_status(session, _completed(ctx, end), self.console_url, ledger)
            await audit.append_many(session, ledger)
            if judged and not calls_first:
                await policy_calls.add(session, judged)
        await _deliver(deliveries)


def _completed(ctx: RunContext, end: dict[str, Any]) -> StatusUpdate:
    """The run's completion with the answer of the turn that ends it (and its ``run.completed`` webhook,
    under an id that a retried turn gives again)."""
    run = RunInput.model_validate(ctx["run"])
    u = StatusUpdate(
        run=run, status="completed", output=end["output"], usage=Usage.model_validate(end["usage"]), key="end"
    )
    u.webhooks = [
        WebhookEvent(
            id=f"msg_{uuid.uuid5(_RUN_END, run.run_id).hex}",
            type="run.completed",
            tenant_id=run.tenant_id,
            run_id=run.run_id,
            occurred_at=utcnow(),
            data=run_data(u),
        )
    ]
    return u


async def _deliver(delivery_ids: list[str]) -> None:
    """After the commit: start a delivery workflow per recorded delivery, on the runs' webhook queue."""
    if delivery_ids:
        queue = webhook_task_queue(activity.info().task_queue)
        await start_deliveries(activity.client(), queue, delivery_ids)


class RunActivities:
    """Writes of the workflow's progress into the database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], console_url: str = "") -> None:
        self.sessions, self.console_url = sessions, console_url

    @activity.defn(name="runs.set_status")
    async def set_status(self, u: StatusUpdate) -> None:
        """Upsert the run row's status (and output, error, usage); record the transition in the ledger."""
        async with self.sessions() as session, session.begin():
            deliveries = await write_status(session, u, self.console_url)
        await _deliver(deliveries)


async def write_status(
    session: AsyncSession, u: StatusUpdate, console_url: str, ledger: list[audit.NewEvent] | None = None
) -> list[str]:
    """Apply a status change to the run row in the caller's transaction (the ledger event, the webhooks'
    outbox, and a finished run's root span with it); returns the deliveries to start once committed.

    Outside an activity (the API recording a decision), the update must have a ``key``. With ``ledger``, the
    ledger event is added to it for the caller to append with others."""
    run = await runs.get(session, u.run.run_id, for_update=True)
    if run is None:
        # The API's commit may have failed after the workflow started: the run still gets its row.
        run = Run(
            id=u.run.run_id,
            tenant_id=u.run.tenant_id,
            agent=u.run.agent,
            status=u.status,
            input=u.run.input,
            requested_by=u.run.requested_by,
            request_hash="",
            trace_id=u.run.trace_id,
        )
        await runs.add(session, run)
    # A run the API marked not_started (Temporal looked unreachable) did start: its workflow wins.
    started_after_all = (run.error or {}).get("reason") == "not_started"
    finished = run.status in ("completed", "failed", "cancelled")
    if finished and u.status != run.status and not started_after_all:
        return []
    deliveries = await record_deliveries(session, u.webhooks, console_url)
    run.status = u.status
    if u.output is not None:
        run.output = u.output
    if u.error is not None:
        run.error = u.error
    if u.usage is not None:
        _record_usage(run, u.usage)
    run.updated_at = utcnow()
    data: dict[str, Any] = {"status": u.status}
    if u.usage is not None:
        data["usage"] = u.usage.model_dump()
    if u.error is not None:
        data["error"] = u.error
    # A resumption that two steps may write (see DecisionRecords) has a key of its own: one event, not two.
    step = u.key or _step()
    event = audit.NewEvent(
        id=f"{u.run.run_id}:status:{u.status}:{step}",
        type=u.event or _RUN_EVENT.get(u.status, "run.status"),
        actor=f"agent:{u.run.agent}",
        data=data,
        tenant_id=u.run.tenant_id,
        run_id=u.run.run_id,
        trace_id=u.run.trace_id,
    )
    if ledger is None:
        await audit.append(session, event)
    else:
        ledger.append(event)
    if u.status in ("completed", "failed", "cancelled"):
        span = run_span(u, run.created_at)
        if span is not None:
            # In the run's own transaction: a worker killed right after it loses no root span.
            await telemetry.store_span(session, span)
            _export(span)
    return deliveries


def _step() -> str:
    info = activity.info()
    return f"{info.workflow_run_id}:{info.activity_id}"


def run_span(u: StatusUpdate, started: dt.datetime) -> ReadableSpan | None:
    """The run's ``invoke_agent`` span, from the trigger to now, under the id the API reserved for it.

    Every Temporal span of the run already has it as ancestor; it can only be made now, when its duration
    is known.
    """
    if not (u.run.trace_id and u.run.span_id):
        return None
    provider = trace.get_tracer_provider()
    flags = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(int(u.run.trace_id, 16), int(u.run.span_id, 16), is_remote=False, trace_flags=flags)
    parent = (
        SpanContext(int(u.run.trace_id, 16), int(u.run.parent_span_id, 16), is_remote=True, trace_flags=flags)
        if u.run.parent_span_id
        else None
    )
    usage = u.usage or Usage()
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": u.run.agent,
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "countersign.cost_usd": usage.cost_usd,
        "countersign.run_id": u.run.run_id,
        "countersign.tenant_id": u.run.tenant_id,
        "countersign.run.status": u.status,
    }
    status = (
        Status(StatusCode.ERROR, str((u.error or {}).get("reason"))) if u.status == "failed" else Status()
    )
    return ReadableSpan(
        name=f"invoke_agent {u.run.agent}",
        context=context,
        parent=parent,
        resource=provider.resource if isinstance(provider, TracerProvider) else Resource.create({}),
        attributes=attributes,
        kind=SpanKind.INTERNAL,
        status=status,
        start_time=int(started.timestamp() * 1e9),
        end_time=int(utcnow().timestamp() * 1e9),
        instrumentation_scope=InstrumentationScope("countersign"),
    )


def _export(span: ReadableSpan) -> None:
    """Hand the span to the exporters (OTLP too); the batch processor only queues it, it never blocks."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider._active_span_processor.on_end(span)  # the SDK's own path for finished spans


_RUN_EVENT = {
    "running": "run.running",
    "awaiting_approval": "run.awaiting_approval",
    "completed": "run.completed",
    "failed": "run.failed",
    "cancelled": "run.cancelled",
}


class ApprovalActivities:
    """Projection of approval requests and decisions, plus the ledger events and the notification."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], console_url: str = "") -> None:
        self.sessions, self.console_url = sessions, console_url

    @activity.defn(name="approvals.open")
    async def open(self, o: OpenRequests) -> None:
        """Record every request of a model turn and mark the run awaiting approval, in one transaction."""
        async with self.sessions() as session, session.begin():
            deliveries = await record_deliveries(session, o.webhooks, self.console_url)
            events: list[audit.NewEvent] = []
            for req in o.requests:
                await _apply(
                    session,
                    RequestChange(request=req, event="approval.requested", actor=f"agent:{req.agent}"),
                    events,
                    evidence=o.evidence.get(req.id),
                )
            run = await runs.get(session, o.run.run_id, for_update=True)
            if run is not None and o.usage is not None:
                _record_usage(run, o.usage)
            if run is not None and run.status == "running":
                run.status, run.updated_at = "awaiting_approval", utcnow()
                events.append(
                    audit.NewEvent(
                        id=f"{o.run.run_id}:awaiting:{o.requests[0].id}",
                        type="run.awaiting_approval",
                        actor=f"agent:{o.run.agent}",
                        data={"status": "awaiting_approval", "requests": [r.id for r in o.requests]},
                        tenant_id=o.run.tenant_id,
                        run_id=o.run.run_id,
                        trace_id=o.run.trace_id,
                    )
                )
            await audit.append_many(session, events)  # one move of the ledger's head
        await _deliver(deliveries)
        for req in o.requests:
            _notify("approval.requested", req)

    @activity.defn(name="approvals.record")
    async def record(self, c: RequestChange) -> None:
        """Upsert the request row (and the decision row); append the ledger event once."""
        async with self.sessions() as session, session.begin():
            deliveries = await record_change(session, c, self.console_url)
        await _deliver(deliveries)
        if c.event in ("approval.reminded", "approval.escalated"):
            _notify(c.event, c.request)


class DecisionRecords:
    """The agents' record sink: writes the decisions a resumed turn runs on, in one transaction, before the
    turn's calls run. The workflow records each decision with ``approvals.record`` too, without waiting for it
    before it resumes: whichever writes first records it, the other finds it there."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], console_url: str = "") -> None:
        self.sessions, self.reads, self.console_url = sessions, read_only(sessions), console_url

    async def __call__(self, ctx: RunContext, records: Sequence[dict[str, Any]]) -> None:
        changes = [RequestChange.model_validate(r) for r in records]
        # Most often the API has recorded them already: a read finds out, with no wait for the write lock.
        async with self.reads() as r:
            done = await approvals.recorded(r, [c.decision.decision_id for c in changes if c.decision])
            messages = [w.id for c in changes for w in c.webhooks]
            deliveries = await webhook_rows.pending_of(r, ctx["run_id"], messages)
        todo = [c for c in changes if c.decision is None or c.decision.decision_id not in done]
        if todo:
            async with self.sessions() as session, session.begin():
                for c in todo:
                    deliveries += await record_change(session, c, self.console_url)
        await _deliver(sorted(set(deliveries)))


async def record_change(session: AsyncSession, c: RequestChange, console_url: str) -> list[str]:
    """Apply a change to a request in the caller's transaction (with its webhooks' outbox and the run's
    resumption); returns the deliveries to start once committed. A decision already on record is left as it
    is: the change was written by another step, or by an earlier attempt of this one."""
    events: list[audit.NewEvent] = []
    applied = await _apply(session, c, events)
    # Pending ones too when recorded before: the step that recorded them may have failed to start them.
    deliveries = await record_deliveries(session, c.webhooks, console_url)
    if applied and c.resume is not None:
        deliveries += await write_status(session, c.resume, console_url, events)
    # The change and the resumption: one move of the ledger's head. A decision's events are new when it was
    # applied (they are written with its row, or not at all).
    await audit.append_many(session, events, fresh=c.decision is not None)
    return deliveries


async def _apply(
    session: AsyncSession,
    c: RequestChange,
    ledger: list[audit.NewEvent],
    evidence: dict[str, Any] | None = None,
) -> bool:
    """Upsert the request row (and the decision row) and add the change's event to ``ledger`` (for the caller
    to append); False when the change is a decision already on record (nothing is written)."""
    r = c.request
    # Locked first: a concurrent writer of the same decision waits here, then finds it recorded.
    row = await approvals.get(session, r.id, for_update=True)
    if c.decision is not None and await approvals.get_decision(session, c.decision.decision_id) is not None:
        return False
    if row is None:
        row = ApprovalRequest(
            id=r.id,
            tenant_id=r.tenant_id,
            run_id=r.run_id,
            agent=r.agent,
            tool=r.tool,
            tool_call_id=r.tool_call_id,
            rule=r.rule,
            policy_version=r.policy_version,
            requested_by=r.requested_by,
            created_at=r.created_at,
            reason=r.reason,
            evidence=evidence,
        )
        approvals.add(session, row)
    row.arguments, row.arguments_hash = r.arguments, r.arguments_hash
    row.required_roles, row.quorum, row.status = r.roles, r.quorum, r.status
    row.escalated, row.reminded, row.expires_at = r.escalated, r.reminded, r.expires_at
    row.outcome = {"approvals": r.approvals, "message": r.message}
    if r.status != "pending" and row.decided_at is None:
        row.decided_at = utcnow()
    if c.decision is not None and c.outcome is not None:
        d = c.decision
        approvals.add(
            session,
            ApprovalDecision(
                id=d.decision_id,
                request_id=r.id,
                tenant_id=r.tenant_id,
                principal_id=d.principal_id,
                action=d.action,
                arguments=d.arguments,
                arguments_hash=d.arguments_hash,
                reason=d.reason,
                message=d.message,
                result_status=c.outcome.request_status,
            ),
        )
    data: dict[str, Any] = {
        "request_id": r.id,
        "tool": r.tool,
        "tool_call_id": r.tool_call_id,
        "arguments_hash": r.arguments_hash,
        "rule": r.rule,
        "policy_version": r.policy_version,
        "roles": r.roles,
        "quorum": r.quorum,
        "status": r.status,
    }
    if c.decision is not None:
        data |= {
            "decision_id": c.decision.decision_id,
            "action": c.decision.action,
            "reason": c.decision.reason,
        }
    attributes: dict[str, Any] = {
        "approval.request_id": r.id,
        "approval.verdict": "require_approval",
        "approval.rule": r.rule,
        "approval.policy_version": r.policy_version,
        "approval.status": r.status,
        "gen_ai.tool.name": r.tool,
        "gen_ai.tool.call.id": r.tool_call_id,
        "countersign.run_id": r.run_id,
    }
    if c.decision is not None:
        attributes |= {
            "approval.decider_id": c.decision.principal_id,
            "approval.action": c.decision.action,
        }
    with telemetry.tracer().start_as_current_span(c.event, attributes=attributes):
        trace_id = telemetry.trace_id_hex()
    ledger.append(
        audit.NewEvent(
            id=f"{r.id}:{c.event}:{c.decision.decision_id if c.decision else activity.info().activity_id}",
            type=c.event,
            actor=c.actor,
            data=data,
            tenant_id=r.tenant_id,
            run_id=r.run_id,
            trace_id=trace_id,
        )
    )
    return True


def _notify(event: str, r: GatedRequest) -> None:
    # Ids and roles only: arguments may hold personal data.
    log.info(
        "%s request=%s run=%s tool=%s roles=%s expires_at=%s",
        event,
        r.id,
        r.run_id,
        r.tool,
        ",".join(r.roles),
        r.expires_at.isoformat() if r.expires_at else "-",
    )
