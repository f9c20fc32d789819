"""Queries over approval requests, the decisions people took on them, and decision claims."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from approvals.models import ApprovalDecision, ApprovalRequest, DecisionClaim
from countersign.db import insert_ignore
from countersign.models import Run
from countersign.repositories.keyset import After, newest_first_query, page_params


async def get(
    s: AsyncSession, request_id: str, *, for_update: bool = False, fresh: bool = False
) -> ApprovalRequest | None:
    """The request of that id (any tenant: callers scope it); row-locked with ``for_update``, re-read from
    the database with ``fresh`` (another process may have written it since this session loaded it)."""
    return await s.get(ApprovalRequest, request_id, with_for_update=for_update, populate_existing=fresh)


async def get_decision(s: AsyncSession, decision_id: str, *, fresh: bool = False) -> ApprovalDecision | None:
    """The decision of that id; re-read from the database with ``fresh``."""
    return await s.get(ApprovalDecision, decision_id, populate_existing=fresh)


async def with_run_and_decision(
    s: AsyncSession, request_id: str, decision_id: str
) -> tuple[ApprovalRequest, Run | None, ApprovalDecision | None] | None:
    """The request of that id (any tenant: callers scope it) with its run and, if taken, the decision of
    ``decision_id`` on it: one query."""
    q = (
        select(ApprovalRequest, Run, ApprovalDecision)
        .outerjoin(Run, Run.id == ApprovalRequest.run_id)
        .outerjoin(
            ApprovalDecision,
            (ApprovalDecision.id == decision_id) & (ApprovalDecision.request_id == ApprovalRequest.id),
        )
        .where(ApprovalRequest.id == request_id)
    )
    row = (await s.execute(q)).first()
    return None if row is None else (row[0], row[1], row[2])


async def recorded(s: AsyncSession, decision_ids: Sequence[str]) -> set[str]:
    """Which of these decisions are on record."""
    if not decision_ids:
        return set()
    found = await s.scalars(select(ApprovalDecision.id).where(ApprovalDecision.id.in_(decision_ids)))
    return set(found)


def add(s: AsyncSession, row: ApprovalRequest | ApprovalDecision) -> None:
    """Add a request or decision to the session (written at the caller's next flush or commit)."""
    s.add(row)


async def decisions_of(s: AsyncSession, request_ids: Sequence[str]) -> list[ApprovalDecision]:
    """The decisions taken on these requests, oldest first."""
    if not request_ids:
        return []
    rows = await s.scalars(_DECISIONS_OF, {"ids": list(request_ids)})
    return list(rows.all())


# Read with every inbox page: built once.
_DECISIONS_OF = (
    select(ApprovalDecision)
    .where(ApprovalDecision.request_id.in_(bindparam("ids", expanding=True)))
    .order_by(ApprovalDecision.created_at)
)


# A request's evidence (the agent's tool results, up to tens of KiB) is read only on its own page; lists skip
# it. Reading it from a listed row raises instead of loading it behind the caller's back.
_NO_EVIDENCE = defer(ApprovalRequest.evidence, raiseload=True)


# What a listing shows of a request: rows of these columns, not ORM objects (loading fifty objects, with
# their outcome and evidence, cost more than the rest of an inbox page together).
LISTED = (
    ApprovalRequest.id,
    ApprovalRequest.run_id,
    ApprovalRequest.agent,
    ApprovalRequest.tool,
    ApprovalRequest.tool_call_id,
    ApprovalRequest.arguments,
    ApprovalRequest.arguments_hash,
    ApprovalRequest.reason,
    ApprovalRequest.rule,
    ApprovalRequest.policy_version,
    ApprovalRequest.required_roles,
    ApprovalRequest.quorum,
    ApprovalRequest.status,
    ApprovalRequest.escalated,
    ApprovalRequest.created_at,
    ApprovalRequest.expires_at,
    ApprovalRequest.decided_at,
)


async def newest(
    s: AsyncSession,
    tenant_id: str,
    *,
    status: str | None,
    run_id: str | None,
    after: After | None,
    limit: int,
) -> list[Row[Any]]:
    """Up to ``limit`` of the tenant's requests (their ``LISTED`` columns), newest first, after the row
    ``after``; optionally only those of one status or run."""
    params = {"tenant_id": tenant_id, "status": status, "run_id": run_id, **page_params(after, limit)}
    rows = await s.execute(_newest(bool(status), bool(run_id), after is not None), params)
    return list(rows.all())


@functools.cache
def _newest(status: bool, run: bool, after: bool) -> Select[Any]:
    # The inbox's listing, one statement per shape, built once.
    q = select(*LISTED).where(ApprovalRequest.tenant_id == bindparam("tenant_id"))
    if status:
        q = q.where(ApprovalRequest.status == bindparam("status"))
    if run:
        q = q.where(ApprovalRequest.run_id == bindparam("run_id"))
    return newest_first_query(q, ApprovalRequest.created_at, ApprovalRequest.id, after=after)


async def inbox(
    s: AsyncSession,
    tenant_id: str,
    principal_id: str,
    *,
    since: dt.datetime,
    agent: str | None = None,
    tool: str | None = None,
    mine: bool = False,
) -> list[ApprovalRequest]:
    """The tenant's requests of runs ``principal_id`` did not start: every pending one, and the others created
    since ``since``; optionally one agent's or tool's, or only those ``principal_id`` decided (``mine``)."""
    q: Any = (
        select(ApprovalRequest)
        .options(_NO_EVIDENCE)
        .where(
            ApprovalRequest.tenant_id == tenant_id,
            ApprovalRequest.requested_by != principal_id,
            (ApprovalRequest.status == "pending") | (ApprovalRequest.created_at >= since),
        )
    )
    if agent:
        q = q.where(ApprovalRequest.agent == agent)
    if tool:
        q = q.where(ApprovalRequest.tool == tool)
    if mine:
        decided = select(ApprovalDecision.request_id).where(
            ApprovalDecision.tenant_id == tenant_id, ApprovalDecision.principal_id == principal_id
        )
        q = q.where(ApprovalRequest.id.in_(decided))
    return list((await s.scalars(q)).all())


async def of_run(s: AsyncSession, run_id: str) -> list[ApprovalRequest]:
    """The run's requests."""
    return list((await s.scalars(select(ApprovalRequest).where(ApprovalRequest.run_id == run_id))).all())


async def claim(s: AsyncSession, decision_id: str, request_id: str) -> bool:
    """Claim the decision id; True for the first claim, False when another delivery claimed it already."""
    row = {"decision_id": decision_id, "request_id": request_id}
    return bool(await insert_ignore(s, DecisionClaim, ["decision_id"], row))


async def unclaim(s: AsyncSession, decision_id: str) -> None:
    """Release the claim on a decision id (the decision did not land)."""
    await s.execute(delete(DecisionClaim).where(DecisionClaim.decision_id == decision_id))


async def decided_with_runs(
    s: AsyncSession,
    statuses: Sequence[str],
    *,
    exclude_tool: str,
    agent: str | None = None,
    since: dt.datetime | None = None,
) -> list[tuple[ApprovalRequest, Run]]:
    """Requests in one of ``statuses`` (not of ``exclude_tool``), each with its run, oldest first; optionally
    one agent's, or those decided since ``since``."""
    q = (
        select(ApprovalRequest, Run)
        .join(Run, Run.id == ApprovalRequest.run_id)
        .where(ApprovalRequest.status.in_(statuses))
        .where(ApprovalRequest.tool != exclude_tool)
        .order_by(ApprovalRequest.created_at)
    )
    if agent:
        q = q.where(ApprovalRequest.agent == agent)
    if since:
        q = q.where(ApprovalRequest.decided_at >= since)
    return [(req, run) for req, run in (await s.execute(q)).all()]


async def outcomes_of_runs(s: AsyncSession, run_ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """(run id, tool, status) of every request of these runs."""
    rows = await s.execute(
        select(ApprovalRequest.run_id, ApprovalRequest.tool, ApprovalRequest.status).where(
            ApprovalRequest.run_id.in_(list(run_ids))
        )
    )
    return [(run_id, tool, status) for run_id, tool, status in rows.all()]


async def review_spans(s: AsyncSession, run_ids: Sequence[str]) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """(run id, opened at, last decided at) of every decided request of these runs."""
    rows = await s.execute(
        select(ApprovalRequest.run_id, ApprovalRequest.created_at, func.max(ApprovalDecision.created_at))
        .join(ApprovalDecision, ApprovalDecision.request_id == ApprovalRequest.id)
        .where(ApprovalRequest.run_id.in_(list(run_ids)))
        .group_by(ApprovalRequest.id, ApprovalRequest.run_id, ApprovalRequest.created_at)
    )
    return [(run_id, opened, decided) for run_id, opened, decided in rows.all()]
