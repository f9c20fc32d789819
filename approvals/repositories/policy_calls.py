"""Queries over the judged tool calls kept for replaying a policy change (``policy_calls``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from approvals.models import PolicyCall
from countersign.db import insert_ignore


async def add(session: AsyncSession, calls: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Keep judged calls, one or a list in one statement (a no-op for those already kept: activities may be
    retried)."""
    await insert_ignore(session, PolicyCall, ["id"], calls, pipelined=True)


async def since(
    session: AsyncSession, start: dt.datetime, tenant: str | None = None, limit: int = 100_000
) -> list[PolicyCall]:
    """The calls judged since ``start`` (oldest first), of one tenant or of all."""
    q = select(PolicyCall).where(PolicyCall.created_at >= start)
    if tenant is not None:
        q = q.where(PolicyCall.tenant_id == tenant)
    return list((await session.scalars(q.order_by(PolicyCall.created_at, PolicyCall.id).limit(limit))).all())


async def prune(session: AsyncSession, before: dt.datetime) -> None:
    """Forget the calls judged before ``before`` (they hold arguments, which may be personal data)."""
    await session.execute(delete(PolicyCall).where(PolicyCall.created_at < before))
