"""The ledger's batch append: one head lock per step, chained in order, retries skipped."""

from __future__ import annotations

from sqlalchemy import select

from approvals import audit
from approvals.models import AuditEvent
from countersign.db import make_engine, session_factory


def _event(event_id: str, n: int) -> audit.NewEvent:
    return audit.NewEvent(id=event_id, type="tool.executed", actor="agent:test", data={"n": n}, run_id="r1")


async def test_append_many_chains_in_order_and_skips_ids_already_recorded(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as s, s.begin():
            first = await audit.append(s, _event("a", 0))
        assert first is not None and first.seq == 1
        async with sessions() as s, s.begin():
            # "a" is a retried step's event, "c" appears twice in the batch: each is recorded once.
            batch = [_event("a", 0), _event("b", 1), _event("c", 2), _event("c", 3)]
            rows = await audit.append_many(s, batch)
        assert [(r.id, r.seq) for r in rows] == [("b", 2), ("c", 3)]
        assert rows[0].prev_hash == first.hash and rows[1].prev_hash == rows[0].hash
        async with sessions() as s, s.begin():
            assert await audit.append_many(s, [_event("b", 1)]) == []
            assert await audit.append(s, _event("d", 4)) is not None
        async with sessions() as s:
            stored = (await s.scalars(select(AuditEvent.id).order_by(AuditEvent.seq))).all()
            result = await audit.verify(s)
        assert list(stored) == ["a", "b", "c", "d"]
        assert result.ok and result.checked == 4
    finally:
        await engine.dispose()
