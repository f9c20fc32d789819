"""Reading the ledger and the span store for auditors: the JSON API and the console share these queries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.errors import Invalid
from approvals.audit import AuditEvent
from countersign.models import Run
from countersign.telemetry import SpanRecord


def parse_time(field: str, text: str) -> dt.datetime:
    """A strict ISO 8601 time (a number is not one); without a zone it is read as UTC, the ledger's zone."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise Invalid(
            f"{field}: not an ISO 8601 date-time", errors=[{"field": field, "message": str(e)}]
        ) from e
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


async def search(
    s: AsyncSession,
    who: Principal,
    *,
    run_id: str | None = None,
    actor: str | None = None,
    type: str | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[AuditEvent], str | None]:
    """The tenant's ledger events in chain order, filtered by run, actor, type (or a prefix ending in '.')
    and time range; and the cursor of the next page."""
    q: Any = select(AuditEvent).where(AuditEvent.tenant_id == who.tenant_id)
    if run_id:
        q = q.where(AuditEvent.run_id == run_id)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if type:
        q = q.where(AuditEvent.type.startswith(type) if type.endswith(".") else AuditEvent.type == type)
    if since:
        q = q.where(AuditEvent.occurred_at >= parse_time("since", since))
    if until:
        q = q.where(AuditEvent.occurred_at < parse_time("until", until))
    if cursor:
        if not cursor.isdigit():
            raise Invalid("cursor: not a cursor this API returned")
        q = q.where(AuditEvent.seq > int(cursor))
    rows = list((await s.scalars(q.order_by(AuditEvent.seq).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, str(rows[-1].seq) if more and rows else None


async def spans(s: AsyncSession, run: Run) -> list[SpanRecord]:
    """The run's trace from the embedded span store, oldest first."""
    if not run.trace_id:
        return []
    return list(
        (
            await s.scalars(
                select(SpanRecord).where(SpanRecord.trace_id == run.trace_id).order_by(SpanRecord.start_time)
            )
        ).all()
    )
