"""Reading approval requests and delivering decisions to the waiting workflow."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Principal
from api.errors import (
    RETRY_AFTER,
    TRANSIENT_RPC,
    AlreadyDecided,
    CountersignError,
    Forbidden,
    Invalid,
    NotFound,
    StaleArguments,
    Unavailable,
)
from api.schemas import ApprovalRead, DecisionCreate, DecisionRead, DecisionResult, Page
from api.services import pagination
from approvals.models import ApprovalDecision, ApprovalRequest
from approvals.policy import PolicyStore, evaluate_without_facts
from approvals.repositories import approvals
from countersign import telemetry
from countersign.db import utcnow
from countersign.models import Run
from countersign.settings import Settings
from tools.registry import get_tool
from workers.activities import record_change
from workers.activities.webhooks import start_deliveries
from workers.contracts import DecisionIn, DecisionOutcome, RequestChange
from workers.webhook_contracts import webhook_task_queue
from workers.workflows.run import AgentRunWorkflow

log = logging.getLogger("countersign.api")
DECISION_NS = uuid.UUID("5d1c2f9e-7a4b-4c1e-9f3a-2b8d6e0c4a71")


async def _decisions(s: AsyncSession, request_ids: list[str]) -> dict[str, list[DecisionRead]]:
    out: dict[str, list[DecisionRead]] = {i: [] for i in request_ids}
    for d in await approvals.decisions_of(s, request_ids):
        out[d.request_id].append(
            DecisionRead(
                id=d.id,
                principal_id=d.principal_id,
                action=d.action,
                arguments=d.arguments,
                reason=d.reason,
                message=d.message,
                result_status=d.result_status,
                created_at=d.created_at,
            )
        )
    return out


def _read(r: ApprovalRequest, decisions: list[DecisionRead]) -> ApprovalRead:
    return ApprovalRead(
        id=r.id,
        run_id=r.run_id,
        agent=r.agent,
        tool=r.tool,
        tool_call_id=r.tool_call_id,
        arguments=r.arguments,
        arguments_hash=r.arguments_hash,
        reason=r.reason,
        rule=r.rule,
        policy_version=r.policy_version,
        required_roles=r.required_roles,
        quorum=r.quorum,
        status=r.status,
        escalated=r.escalated,
        decisions=decisions,
        created_at=r.created_at,
        expires_at=r.expires_at,
        decided_at=r.decided_at,
    )


async def list_requests(
    s: AsyncSession, who: Principal, *, status: str | None, run_id: str | None, cursor: str | None, limit: int
) -> Page[ApprovalRead]:
    """The tenant's approval requests, newest first."""
    found = await approvals.newest(
        s, who.tenant_id, status=status, run_id=run_id, after=pagination.decode(cursor), limit=limit + 1
    )
    rows, nxt = pagination.page(found, limit)
    decisions = await _decisions(s, [r.id for r in rows])
    # By position: a row's attribute access costs as much as validating the item.
    items = [ApprovalRead(**dict(zip(_LISTED, r, strict=True)), decisions=decisions[r[0]]) for r in rows]
    return Page[ApprovalRead](items=items, next_cursor=nxt)


# The listing's columns, named as ApprovalRead's fields.
_LISTED = tuple(c.key for c in approvals.LISTED)


async def get_row(s: AsyncSession, who: Principal, request_id: str) -> ApprovalRequest:
    """The request, if it belongs to the principal's tenant (another tenant's id is a 404, not a 403)."""
    return _owned(await approvals.get(s, request_id), who, request_id)


def _owned(row: ApprovalRequest | None, who: Principal, request_id: str) -> ApprovalRequest:
    if row is None or row.tenant_id != who.tenant_id:
        raise NotFound(f"approval request {request_id} not found")
    return row


async def get_request(s: AsyncSession, who: Principal, request_id: str) -> ApprovalRead:
    """One request with its decisions."""
    return await describe(s, await get_row(s, who, request_id))


async def describe(s: AsyncSession, row: ApprovalRequest) -> ApprovalRead:
    """A request row as the API shows it, with its decisions."""
    return _read(row, (await _decisions(s, [row.id]))[row.id])


# The inbox's status tabs: "decided" is every way a person closed a request.
INBOX_STATUSES: dict[str, tuple[str, ...]] = {
    "pending": ("pending",),
    "decided": ("approved", "rejected", "responded"),
    "expired": ("expired",),
}
# How far back the inbox looks for closed requests (pending ones are always all shown).
INBOX_DAYS = 30


async def inbox(
    s: AsyncSession,
    who: Principal,
    *,
    status: str = "pending",
    agent: str | None = None,
    tool: str | None = None,
    mine: bool = False,
    limit: int = 200,
) -> tuple[list[tuple[ApprovalRead, ApprovalRequest]], dict[str, int]]:
    """The requests ``who`` may decide (one of their roles is required, and the run is not their own), most
    urgent first, with counts per inbox status; ``mine``: only those they decided."""
    since = utcnow() - dt.timedelta(days=INBOX_DAYS)
    found = await approvals.inbox(s, who.tenant_id, who.id, since=since, agent=agent, tool=tool, mine=mine)
    # Required roles are a JSON list: matched here rather than in SQL, which differs per database.
    rows = [r for r in found if set(r.required_roles) & who.roles]
    counts = {name: sum(r.status in states for r in rows) for name, states in INBOX_STATUSES.items()}
    chosen = [r for r in rows if r.status in INBOX_STATUSES.get(status, (status,))]
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    if status == "pending":
        chosen.sort(key=lambda r: (r.expires_at or far, r.created_at))
    else:
        chosen.sort(key=lambda r: r.decided_at or r.created_at, reverse=True)
    chosen = chosen[:limit]
    decisions = await _decisions(s, [r.id for r in chosen])
    return [(_read(r, decisions[r.id]), r) for r in chosen], counts


def decision_id(request_id: str, who: Principal, body: DecisionCreate) -> str:
    """Deterministic: the same person sending the same decision again gets the same id (and outcome)."""
    key = json.dumps([request_id, who.id, body.model_dump(mode="json")], sort_keys=True)
    return str(uuid.uuid5(DECISION_NS, key))


_REFUSALS: dict[str, type[CountersignError]] = {
    "already_decided": AlreadyDecided,
    "stale_arguments": StaleArguments,
    "forbidden": Forbidden,
}


async def decide(
    s: AsyncSession,
    reads: async_sessionmaker[AsyncSession],
    temporal: Client,
    policy: PolicyStore,
    settings: Settings,
    who: Principal,
    request_id: str,
    body: DecisionCreate,
) -> tuple[DecisionResult, bool]:
    """Check who may decide, then deliver the decision as a Temporal Update whose id is the decision id.

    Checked on a read session: nothing is written (on SQLite, no write lock taken) until the workflow has
    taken the decision. Then one transaction claims the decision id and writes the decision's record.
    """
    did = decision_id(request_id, who, body)
    async with reads() as r:
        req, run, earlier = await _deciding(r, who, request_id, did)
    if earlier is not None:
        return DecisionResult(
            decision_id=did,
            request_id=request_id,
            action=earlier.action,
            request_status=earlier.result_status,
            approvals=len((req.outcome or {}).get("approvals") or []),
            quorum=req.quorum,
        ), False
    if req.status != "pending":
        raise AlreadyDecided(f"the request is already {req.status}")
    if body.arguments_hash != req.arguments_hash:
        raise StaleArguments("arguments_hash: the pending arguments are not the ones you saw")
    if body.action == "edit":
        check_edit(policy, req, body.arguments or {})
    update = DecisionIn(
        decision_id=did,
        request_id=request_id,
        principal_id=who.id,
        principal_roles=sorted(who.roles),
        action=body.action,
        arguments_hash=body.arguments_hash,
        arguments=body.arguments,
        reason=body.reason,
        message=body.message,
    )
    handle = temporal.get_workflow_handle(f"run-{req.run_id}")
    with _in_run_trace(run, req, who, body):
        try:
            outcome: DecisionOutcome = await handle.execute_update(AgentRunWorkflow.decide, update, id=did)
        except WorkflowUpdateFailedError as e:
            cause = e.cause
            landed = None
            if isinstance(cause, ApplicationError):
                async with reads() as r:
                    landed = await _recorded(r, did, req)
            if landed is not None:
                # Delivered twice (a worker died while it was in flight): this decision is the one on record.
                return landed, await _claim(s, did, req.id)
            if isinstance(cause, ApplicationError) and cause.type in _REFUSALS:
                raise _REFUSALS[cause.type](cause.message) from e
            raise AlreadyDecided(str(cause or e)) from e
        except RPCError as e:
            if e.status in TRANSIENT_RPC:
                raise Unavailable(
                    f"Temporal did not take the decision ({e.status.name}); retry it", headers=RETRY_AFTER
                ) from e
            if await _still_running(handle):
                # Temporal lost the update (a server restart before it was accepted): the run still waits,
                # so the decision was not taken and may be sent again.
                raise Unavailable(
                    f"the decision was not taken ({e.status.name}: {e.message}); retry it",
                    headers=RETRY_AFTER,
                ) from e
            # The workflow is gone (completed, cancelled, terminated) and the request with it.
            raise AlreadyDecided(f"the run no longer accepts decisions: {e.message}") from e
        # Identical POSTs racing each other all reach the one Temporal Update (same id) and get its outcome;
        # the one that claims the decision id first is the one that created it (201), the others are
        # replays (200).
        if outcome.record is None:
            first = await _claim(s, did, req.id)  # a run from before RECORD_IN_ACT recorded it itself
        else:
            try:
                first = await _write_record(s, temporal, settings, outcome.record)
            except (DBAPIError, PoolTimeout) as e:
                await s.rollback()
                # Taken, not yet on record: nothing acts on it until it is (the acting turn writes it first).
                raise Unavailable(
                    "the decision was taken but its record could not be written yet; send the same decision "
                    "again to confirm it",
                    headers=RETRY_AFTER,
                ) from e
    return DecisionResult(**outcome.model_dump(exclude={"record"})), first


async def _deciding(
    r: AsyncSession, who: Principal, request_id: str, did: str
) -> tuple[ApprovalRequest, Run | None, ApprovalDecision | None]:
    """The request ``who`` would decide (refused if they may not), its run, and the decision if taken."""
    row, run, decision = await approvals.with_run_and_decision(r, request_id, did) or (None, None, None)
    req = _owned(row, who, request_id)
    if not set(req.required_roles) & who.roles:
        raise Forbidden(f"deciding this request needs one of the roles: {', '.join(req.required_roles)}")
    if who.id == req.requested_by:
        raise Forbidden("the principal who started the run may not decide its approvals")
    return req, run, decision


async def _claim(s: AsyncSession, did: str, request_id: str) -> bool:
    first = await approvals.claim(s, did, request_id)
    await s.commit()
    return first


async def _write_record(
    s: AsyncSession, temporal: Client, settings: Settings, record: dict[str, Any]
) -> bool:
    """Claim the decision id and write the decision's record, in one transaction, before answering: the
    workflow took the decision and went on without waiting for it. The turn that acts on it writes it
    first when it gets there first (idempotent). A request that fails here is retried with the same
    decision id, whose update answers with this record again. True for the first claim."""
    change = RequestChange.model_validate(record)
    assert change.decision is not None
    first = await approvals.claim(s, change.decision.decision_id, change.request.id)
    deliveries = await record_change(s, change, settings.resolved_public_url())
    await s.commit()
    try:
        await start_deliveries(temporal, webhook_task_queue(settings.task_queue), deliveries)
    except RPCError as e:
        # Recorded as pending: the acting turn starts them again.
        log.warning("deliveries of decision %s not started: %s", change.decision.decision_id, e.status.name)
    return first


async def _still_running(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the run's workflow is still open (if Temporal cannot say, assume it is: the caller retries)."""
    try:
        described = await handle.describe()
    except RPCError as e:
        return e.status != RPCStatusCode.NOT_FOUND
    return described.status == WorkflowExecutionStatus.RUNNING


async def _recorded(s: AsyncSession, did: str, req: ApprovalRequest) -> DecisionResult | None:
    """The outcome of decision ``did`` if the workflow recorded it (read afresh, after the update)."""
    decision = await approvals.get_decision(s, did, fresh=True)
    if decision is None:
        return None
    row = await approvals.get(s, req.id, fresh=True)
    return DecisionResult(
        decision_id=did,
        request_id=req.id,
        action=decision.action,
        request_status=decision.result_status,
        approvals=len(((row.outcome if row else None) or {}).get("approvals") or []),
        quorum=req.quorum,
    )


@contextmanager
def _in_run_trace(
    run: Run | None, req: ApprovalRequest, who: Principal, body: DecisionCreate
) -> Iterator[None]:
    """Deliver the decision inside the run's trace (an ``approval.decide`` span under the run's span), linked
    to the decision request's own trace, so the run's trace shows who decided what and when."""
    here = trace.get_current_span().get_span_context()
    links = [Link(here)] if here.is_valid else []
    parent = telemetry.context_of(run.trace_id, run.span_id) if run and run.trace_id and run.span_id else None
    attributes = {
        "approval.request_id": req.id,
        "approval.decider_id": who.id,
        "approval.action": body.action,
        "approval.rule": req.rule,
        "approval.policy_version": req.policy_version,
        "countersign.run_id": req.run_id,
    }
    with telemetry.tracer().start_as_current_span(
        "approval.decide", context=parent, links=links, attributes=attributes
    ):
        yield


def check_edit(policy: PolicyStore, req: ApprovalRequest, arguments: dict[str, Any]) -> None:
    tool = get_tool(req.tool)
    if tool is None:
        raise Invalid(f"arguments: tool {req.tool} is no longer registered")
    try:
        tool.args_model.model_validate(arguments)
    except ValidationError as e:
        errors = [
            {"field": ".".join(["arguments", *(str(p) for p in err["loc"])]), "message": err["msg"]}
            for err in e.errors(include_url=False)
        ]
        raise Invalid("; ".join(f"{x['field']}: {x['message']}" for x in errors), errors=errors) from e
    # The edit is a person's: its values are theirs. Facts live with the workers' records, not here, so a
    # condition reading one fails closed (a deny rule with `on_error: deny` refuses the edit).
    verdict = evaluate_without_facts(
        policy.current,
        "facts are looked up by the workers, not when an edit is checked",
        tool=tool.name,
        kind=tool.kind,
        args=arguments,
        agent=req.agent,
        tenant=req.tenant_id,
        caller=req.requested_by,
        provenance=dict.fromkeys(arguments, "person"),
    )
    if verdict.outcome == "deny":
        raise Invalid(
            f"arguments: the policy denies this edit (rule {verdict.rule}): {verdict.reason}",
            errors=[{"field": "arguments", "message": f"denied by rule {verdict.rule}"}],
        )
