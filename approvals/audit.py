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

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from approvals.models import AuditEvent
from approvals.repositories import ledger
from countersign.db import utcnow
from countersign.hashing import canonical_hash, canonical_json

GENESIS = "0" * 64


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


async def append(session: AsyncSession, event: NewEvent, *, fresh: bool = False) -> AuditEvent | None:
    """Append one event in the caller's transaction; returns None when an event with that id exists."""
    rows = await append_many(session, [event], fresh=fresh)
    return rows[0] if rows else None


async def append_many(
    session: AsyncSession, events: Sequence[NewEvent], *, fresh: bool = False
) -> list[AuditEvent]:
    """Append events in order in the caller's transaction, chained one to the next; those whose id is
    already in the ledger (a retried step) are skipped. Returns the appended rows.

    The head is locked and moved once, and existing ids are looked up in one query, however many events a
    step records; none when the caller knows the ids are new (``fresh``: a duplicate then fails the insert).
    """
    if not events:
        return []
    seq, prev = await ledger.lock_head(session, GENESIS)
    seen = set() if fresh else await ledger.existing_ids(session, [e.id for e in events])
    rows: list[dict[str, Any]] = []
    for event in events:
        if event.id in seen:
            continue
        seen.add(event.id)
        seq += 1
        row: dict[str, Any] = {
            "seq": seq,
            "id": event.id,
            "tenant_id": event.tenant_id,
            "run_id": event.run_id,
            "type": event.type,
            "actor": event.actor,
            "trace_id": event.trace_id,
            "occurred_at": utcnow(),
            "data": json.loads(canonical_json(event.data)),
            "prev_hash": prev,
        }
        row["hash"] = prev = event_hash(row)
        rows.append(row)
    if rows:
        await ledger.add_events(session, rows)
    return [AuditEvent(**r) for r in rows]


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
        rows = await ledger.after(session, last, batch)
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
    head = await ledger.head(session)
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
