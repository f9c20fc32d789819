"""The tamper-evident audit ledger: append-only events chained by SHA-256.

Each event stores the hash of the previous event and its own hash over a canonical JSON form of its fields,
so changing or deleting any stored event breaks the chain at that point. Appends take the chain head row's
lock first (an UPDATE), which serialises writers on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Integer, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from countersign.db import Base, insert_ignore, utcnow
from countersign.hashing import canonical_hash, canonical_json

GENESIS = "0" * 64
BIGINT = BigInteger().with_variant(Integer(), "sqlite")


class AuditEvent(Base):
    """One ledger event. Never updated or deleted (PostgreSQL triggers refuse it)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=False)
    id: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64), index=True)
    run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    trace_id: Mapped[str | None] = mapped_column(String(32))
    occurred_at: Mapped[dt.datetime] = mapped_column(index=True)
    data: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's head: last sequence number and hash. Its row lock orders concurrent appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BIGINT)
    hash: Mapped[str] = mapped_column(String(64))


def event_hash(e: AuditEvent | dict[str, Any]) -> str:
    """SHA-256 over the event's content and its predecessor's hash."""
    get = e.get if isinstance(e, dict) else lambda k: getattr(e, k)
    occurred = get("occurred_at")
    fields = {
        "seq": get("seq"),
        "id": get("id"),
        "tenant_id": get("tenant_id"),
        "run_id": get("run_id"),
        "type": get("type"),
        "actor": get("actor"),
        "trace_id": get("trace_id"),
        "occurred_at": occurred.astimezone(dt.UTC).isoformat()
        if isinstance(occurred, dt.datetime)
        else occurred,
        "data": get("data"),
        "prev_hash": get("prev_hash"),
    }
    return canonical_hash(fields)


@dataclass(frozen=True)
class NewEvent:
    """An event to append; ``id`` is deterministic where the caller may retry, so a retry is a no-op."""

    id: str
    type: str
    actor: str
    data: dict[str, Any]
    tenant_id: str | None = None
    run_id: str | None = None
    trace_id: str | None = None


async def append(session: AsyncSession, event: NewEvent) -> AuditEvent | None:
    """Append one event in the caller's transaction; returns None when an event with that id exists."""
    dialect = session.get_bind().dialect.name
    await session.execute(insert_ignore(dialect, AuditHead, {"id": 1, "seq": 0, "hash": GENESIS}, ["id"]))
    # Lock the head before reading anything else, so two writers cannot both chain onto the same event.
    await session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq))
    head = (await session.execute(select(AuditHead).where(AuditHead.id == 1))).scalar_one()
    if await session.scalar(select(AuditEvent.seq).where(AuditEvent.id == event.id)) is not None:
        return None
    row = AuditEvent(
        seq=head.seq + 1,
        id=event.id,
        tenant_id=event.tenant_id,
        run_id=event.run_id,
        type=event.type,
        actor=event.actor,
        trace_id=event.trace_id,
        occurred_at=utcnow(),
        data=json.loads(canonical_json(event.data)),
        prev_hash=head.hash,
    )
    row.hash = event_hash(row)
    session.add(row)
    # The event first: the head may only move onto an event that exists (the database checks it).
    await session.flush([row])
    head.seq, head.hash = row.seq, row.hash
    await session.flush([head])
    return row


async def record(sessions: async_sessionmaker[AsyncSession], event: NewEvent) -> None:
    """Append one event in its own transaction."""
    async with sessions() as session, session.begin():
        await append(session, event)


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain check: ``broken_at`` is the first event that fails, if any."""

    ok: bool
    checked: int
    head_hash: str
    broken_at: int | None = None
    problem: str | None = None


async def iter_events(session: AsyncSession, batch: int = 1000, after: int = 0) -> AsyncIterator[AuditEvent]:
    """Every event in chain order (after seq ``after``), in batches."""
    last = after
    while True:
        rows: Sequence[AuditEvent] = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
            )
        ).all()
        if not rows:
            return
        for r in rows:
            yield r
        last = rows[-1].seq


async def verify(session: AsyncSession, after: tuple[int, str] | None = None) -> VerifyResult:
    """Recompute the chain, or only its part after a trusted ``(seq, hash)`` (a verified checkpoint); report
    the first event whose link or content does not hold."""
    start, prev = after or (0, GENESIS)
    expected_seq, n = start + 1, start
    async for e in iter_events(session, after=start):
        n += 1
        if e.seq != expected_seq:
            return VerifyResult(False, n, prev, e.seq, f"event seq {expected_seq} is missing (found {e.seq})")
        if e.prev_hash != prev:
            return VerifyResult(False, n, prev, e.seq, "prev_hash does not match the previous event")
        if event_hash(e) != e.hash:
            return VerifyResult(False, n, prev, e.seq, "content does not match its hash")
        prev, expected_seq = e.hash, expected_seq + 1
    head = await session.scalar(select(AuditHead).where(AuditHead.id == 1))
    if head is not None and (head.seq != n or head.hash != prev):
        return VerifyResult(
            False, n, prev, n + 1, f"chain head says {head.seq} events; found {n} (tail deleted?)"
        )
    return VerifyResult(True, n, prev)


def to_json(e: AuditEvent) -> dict[str, Any]:
    """The event as served by the API and written by export."""
    return {
        "seq": e.seq,
        "id": e.id,
        "type": e.type,
        "actor": e.actor,
        "tenant_id": e.tenant_id,
        "run_id": e.run_id,
        "trace_id": e.trace_id,
        "occurred_at": e.occurred_at.astimezone(dt.UTC).isoformat(),
        "data": e.data,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def check_exported(lines: list[dict[str, Any]]) -> VerifyResult:
    """Check exported events on their own: each event's hash, and the links between consecutive events."""
    prev: dict[str, Any] | None = None
    for n, e in enumerate(lines, start=1):
        if event_hash(e) != e["hash"]:
            return VerifyResult(
                False, n, str(prev["hash"] if prev else ""), int(e["seq"]), "content does not match its hash"
            )
        if prev is not None and int(e["seq"]) == int(prev["seq"]) + 1 and e["prev_hash"] != prev["hash"]:
            return VerifyResult(
                False, n, str(prev["hash"]), int(e["seq"]), "prev_hash does not match the previous event"
            )
        if int(e["seq"]) == 1 and e["prev_hash"] != GENESIS:
            return VerifyResult(False, n, GENESIS, 1, "the first event does not start the chain")
        prev = e
    return VerifyResult(True, len(lines), str(prev["hash"]) if prev else GENESIS)
