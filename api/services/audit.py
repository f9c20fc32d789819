"""Reading the ledger and the span store for auditors: the JSON API and the console share these queries."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.errors import Invalid
from approvals.models import AuditEvent
from approvals.repositories import ledger
from countersign.models import Run
from countersign.repositories import runs
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
    start = parse_time("since", since) if since else None
    end = parse_time("until", until) if until else None
    if cursor and not cursor.isdigit():
        raise Invalid("cursor: not a cursor this API returned")
    rows = await ledger.search(
        s,
        who.tenant_id,
        run_id=run_id,
        actor=actor,
        type=type,
        since=start,
        until=end,
        after_seq=int(cursor) if cursor else None,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, str(rows[-1].seq) if more and rows else None


async def spans(s: AsyncSession, run: Run) -> list[SpanRecord]:
    """The run's trace from the embedded span store, oldest first."""
    if not run.trace_id:
        return []
    return await runs.trace_spans(s, run.trace_id)
