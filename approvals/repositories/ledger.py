"""Queries over the audit ledger: its events, the chain head that orders appends, and signed checkpoints.

The chain itself (hashes, links, verification) is ``approvals.audit``; this module only reads and writes rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from approvals.models import AuditCheckpoint, AuditEvent, AuditHead
from countersign.db import PIPELINE, insert_ignore

HEAD_ID = 1
_HEAD: Table = AuditHead.__table__  # type: ignore[assignment]
_EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]


async def lock_head(s: AsyncSession, genesis: str) -> tuple[int, str]:
    """The chain head's ``(seq, hash)``, created at ``(0, genesis)`` when missing and row-locked (an UPDATE
    returning it) before anything else is read, so two writers cannot both chain onto the same event."""
    # Core statements on the table: the ORM's bulk-update bookkeeping cost more than the statement itself.
    touch = (
        update(_HEAD)
        .where(_HEAD.c.id == HEAD_ID)
        .values(seq=_HEAD.c.seq)
        .returning(_HEAD.c.seq, _HEAD.c.hash)
    )
    row = (await s.execute(touch)).one_or_none()
    if row is None:
        # The head exists after the first event: created only when the UPDATE found no row.
        await insert_ignore(s, AuditHead, ["id"], {"id": HEAD_ID, "seq": 0, "hash": genesis})
        row = (await s.execute(touch)).one()
    return int(row[0]), str(row[1])


async def head(s: AsyncSession) -> AuditHead | None:
    """The chain head (None before the first event)."""
    # Appends move the head with Core statements, behind the session's identity map: always reload it.
    row: AuditHead | None = await s.scalar(
        select(AuditHead).where(AuditHead.id == HEAD_ID).execution_options(populate_existing=True)
    )
    return row


async def existing_ids(s: AsyncSession, event_ids: Sequence[str]) -> set[str]:
    """Which of these event ids are in the ledger."""
    if not event_ids:
        return set()
    return set((await s.scalars(select(_EVENTS.c.id).where(_EVENTS.c.id.in_(set(event_ids))))).all())


async def add_events(s: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert the events (chained, in order) and move the locked head onto the last: the events first, since
    the head may only point at an event that exists (the database checks it)."""
    # Nothing is read back: both are pipelined (on SQLite, the write lock is held for two trips fewer).
    await s.execute(insert(_EVENTS).execution_options(**PIPELINE), list(rows))
    last = rows[-1]
    move = update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(seq=last["seq"], hash=last["hash"])
    await s.execute(move.execution_options(**PIPELINE))


async def by_id(s: AsyncSession, event_id: str) -> AuditEvent | None:
    """The event of that id."""
    row: AuditEvent | None = await s.scalar(select(AuditEvent).where(AuditEvent.id == event_id))
    return row


async def after(s: AsyncSession, seq: int, limit: int) -> Sequence[AuditEvent]:
    """Up to ``limit`` events after ``seq``, in chain order."""
    rows = await s.scalars(
        select(AuditEvent).where(AuditEvent.seq > seq).order_by(AuditEvent.seq).limit(limit)
    )
    return rows.all()


async def last_seq(s: AsyncSession) -> int:
    """The newest stored event's seq (0 when there is none)."""
    return int(await s.scalar(select(func.max(AuditEvent.seq))) or 0)


async def hashes(s: AsyncSession, seqs: Iterable[int]) -> dict[int, str]:
    """The stored hash of each of these events (missing ones are absent)."""
    wanted = sorted(set(seqs))
    if not wanted:
        return {}
    rows = await s.execute(select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.seq.in_(wanted)))
    return {int(seq): str(h) for seq, h in rows.all()}


async def search(
    s: AsyncSession,
    tenant_id: str,
    *,
    run_id: str | None = None,
    actor: str | None = None,
    type: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    after_seq: int | None = None,
    limit: int,
) -> list[AuditEvent]:
    """Up to ``limit`` of the tenant's events in chain order after ``after_seq``, filtered by run, actor, type
    (or a prefix ending in '.') and time range ``[since, until)``."""
    q: Any = select(AuditEvent).where(AuditEvent.tenant_id == tenant_id)
    if run_id:
        q = q.where(AuditEvent.run_id == run_id)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if type:
        q = q.where(AuditEvent.type.startswith(type) if type.endswith(".") else AuditEvent.type == type)
    if since:
        q = q.where(AuditEvent.occurred_at >= since)
    if until:
        q = q.where(AuditEvent.occurred_at < until)
    if after_seq is not None:
        q = q.where(AuditEvent.seq > after_seq)
    return list((await s.scalars(q.order_by(AuditEvent.seq).limit(limit))).all())


async def of_run(
    s: AsyncSession,
    run_id: str,
    *,
    tenant_id: str | None = None,
    after_seq: int | None = None,
    limit: int | None = None,
) -> list[AuditEvent]:
    """The run's events in chain order, after ``after_seq`` and at most ``limit``; only the tenant's if
    ``tenant_id`` is given."""
    q = select(AuditEvent).where(AuditEvent.run_id == run_id)
    if tenant_id is not None:
        q = q.where(AuditEvent.tenant_id == tenant_id)
    if after_seq is not None:
        q = q.where(AuditEvent.seq > after_seq)
    q = q.order_by(AuditEvent.seq)
    if limit is not None:
        q = q.limit(limit)
    return list((await s.scalars(q)).all())


async def for_export(
    s: AsyncSession, *, run: str | None = None, since: dt.datetime | None = None, tenant: str | None = None
) -> list[AuditEvent]:
    """Every event in chain order, or those of one run, tenant or time onwards."""
    q = select(AuditEvent).order_by(AuditEvent.seq)
    if run:
        q = q.where(AuditEvent.run_id == run)
    if since:
        q = q.where(AuditEvent.occurred_at >= since)
    if tenant:
        q = q.where(AuditEvent.tenant_id == tenant)
    return list((await s.scalars(q)).all())


async def checkpoint_at(s: AsyncSession, seq: int) -> AuditCheckpoint | None:
    """The checkpoint signed over the head at ``seq``, if there is one."""
    return await s.get(AuditCheckpoint, seq)


async def add_checkpoint(s: AsyncSession, cp: AuditCheckpoint) -> None:
    """Insert a checkpoint and flush."""
    s.add(cp)
    await s.flush()


async def checkpoints(s: AsyncSession) -> list[AuditCheckpoint]:
    """The stored checkpoints, oldest first."""
    return list((await s.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq))).all())
