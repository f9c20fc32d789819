"""Queries over runs (and the tenant row that orders a tenant's run starts), and the span store's traces."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from countersign.models import Run, Tenant
from countersign.repositories.keyset import After, newest_first
from countersign.telemetry import SpanRecord


async def get(s: AsyncSession, run_id: str, *, for_update: bool = False) -> Run | None:
    """The run of that id (any tenant: callers scope it), row-locked with ``for_update`` (PostgreSQL)."""
    return await s.get(Run, run_id, with_for_update=for_update)


async def by_idempotency_key(s: AsyncSession, tenant_id: str, key: str) -> Run | None:
    """The tenant's run recorded under that Idempotency-Key, if any."""
    run: Run | None = await s.scalar(
        select(Run).where(Run.tenant_id == tenant_id, Run.idempotency_key == key)
    )
    return run


async def add(s: AsyncSession, run: Run) -> None:
    """Insert the run and flush (a used Idempotency-Key raises ``IntegrityError`` here)."""
    s.add(run)
    await s.flush()


async def status_of(s: AsyncSession, tenant_id: str, run_id: str) -> str | None:
    """The run's status, if the tenant has that run."""
    status: str | None = await s.scalar(
        select(Run.status).where(Run.id == run_id, Run.tenant_id == tenant_id)
    )
    return status


async def newest(
    s: AsyncSession,
    tenant_id: str,
    *,
    status: str | None,
    agent: str | None,
    created_from: dt.datetime | None,
    created_until: dt.datetime | None,
    after: After | None,
    limit: int,
) -> list[Run]:
    """Up to ``limit`` of the tenant's runs, newest first, after the row ``after``; optionally only those of
    one status or agent, created in ``[created_from, created_until)``."""
    q: Any = select(Run).where(Run.tenant_id == tenant_id)
    if created_from:
        q = q.where(Run.created_at >= created_from)
    if created_until:
        q = q.where(Run.created_at < created_until)
    if status:
        q = q.where(Run.status == status)
    if agent:
        q = q.where(Run.agent == agent)
    return await newest_first(s, q, Run.created_at, Run.id, after, limit)


async def lock_tenant(s: AsyncSession, tenant_id: str) -> None:
    """Lock the tenant's row (PostgreSQL) so concurrent run starts of one tenant count one after the other."""
    await s.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())


async def count_in(s: AsyncSession, tenant_id: str, statuses: Sequence[str]) -> int:
    """How many of the tenant's runs are in one of ``statuses``."""
    n = await s.scalar(
        select(func.count()).select_from(Run).where(Run.tenant_id == tenant_id, Run.status.in_(statuses))
    )
    return n or 0


async def finished_since(
    s: AsyncSession, since: dt.datetime, statuses: Sequence[str], agent: str | None = None
) -> list[Run]:
    """Every tenant's runs created since ``since`` in one of ``statuses`` (optionally one agent's)."""
    q = select(Run).where(Run.created_at >= since, Run.status.in_(statuses))
    if agent:
        q = q.where(Run.agent == agent)
    return list((await s.scalars(q)).all())


async def trace_spans(s: AsyncSession, trace_id: str) -> list[SpanRecord]:
    """A trace's spans from the embedded span store, oldest first."""
    rows = await s.scalars(
        select(SpanRecord).where(SpanRecord.trace_id == trace_id).order_by(SpanRecord.start_time)
    )
    return list(rows.all())
