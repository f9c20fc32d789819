"""A run's events as a stream, read from the audit ledger (the one ordered record of what happened)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import Principal
from api.schemas import RunEvent
from api.services.runs import TERMINAL
from approvals.models import AuditEvent
from approvals.repositories import ledger
from countersign.repositories import runs

BATCH = 200


def to_event(e: AuditEvent) -> RunEvent:
    """A ledger event as the stream shows it."""
    return RunEvent(seq=e.seq, type=e.type, actor=e.actor, occurred_at=e.occurred_at, data=e.data)


async def _poll(
    sessions: async_sessionmaker[AsyncSession], who: Principal, run_id: str, after: int
) -> tuple[str | None, Sequence[AuditEvent]]:
    async with sessions() as s:
        # Status first: the terminal status and its ledger event commit together, so once the status reads
        # terminal, the events read next include everything the run will ever have.
        status = await runs.status_of(s, who.tenant_id, run_id)
        rows = await ledger.of_run(s, run_id, tenant_id=who.tenant_id, after_seq=after, limit=BATCH)
    return status, rows


async def stream(
    sessions: async_sessionmaker[AsyncSession],
    who: Principal,
    run_id: str,
    *,
    after: int,
    poll_seconds: float,
    max_seconds: float,
) -> AsyncIterator[RunEvent]:
    """The run's events after ``after`` in ledger order, then new ones as they are appended; ends when the
    run is finished and everything is sent, or when ``max_seconds`` pass (clients resume with Last-Event-ID).
    """
    deadline = time.monotonic() + max_seconds
    while True:
        status, rows = await _poll(sessions, who, run_id, after)
        for row in rows:
            yield to_event(row)
            after = row.seq
        if len(rows) == BATCH:
            continue
        if status is None or status in TERMINAL or time.monotonic() >= deadline:
            return
        await asyncio.sleep(poll_seconds)
