"""The inbox's listing and a page's decisions: built-once statements, keyset pages with ties in created_at."""

from __future__ import annotations

import datetime as dt

from approvals.models import ApprovalDecision, ApprovalRequest
from approvals.repositories import approvals
from countersign.db import make_engine, session_factory
from countersign.models import Run, Tenant

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def _request(n: int, run_id: str, status: str, created: dt.datetime) -> ApprovalRequest:
    return ApprovalRequest(
        id=f"req-{n:02d}",
        tenant_id="acme",
        run_id=run_id,
        agent="support_drafting",
        tool="issue_refund",
        tool_call_id=f"c{n}",
        arguments={"n": n},
        arguments_hash="h",
        rule="refunds",
        policy_version="v1",
        required_roles=["approver:support"],
        status=status,
        requested_by="key:1",
        created_at=created,
    )


async def test_pages_walk_every_request_once_newest_first_with_filters(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as s, s.begin():
            s.add_all([Tenant(id="acme", name="acme"), Tenant(id="globex", name="globex")])
            # No ORM relationships: each table's rows are flushed before the rows that refer to them.
            await s.flush()
            for run in ("r1", "r2"):
                s.add(
                    Run(
                        id=run,
                        tenant_id="acme",
                        agent="a",
                        status="running",
                        input={},
                        requested_by="k",
                        request_hash="h",
                    )
                )
            await s.flush()
            # Three pairs share a created_at: the page boundary falls inside a tie.
            for n in range(7):
                created = T0 + dt.timedelta(seconds=n // 2)
                s.add(_request(n, "r1" if n % 3 else "r2", "approved" if n == 4 else "pending", created))
            await s.flush()
            s.add(
                ApprovalDecision(
                    id="d1",
                    request_id="req-04",
                    tenant_id="acme",
                    principal_id="key:2",
                    action="approve",
                    result_status="approved",
                    arguments_hash="h",
                    created_at=T0,
                )
            )

        async def walk(**filters: str | None) -> list[str]:
            seen: list[str] = []
            after = None
            async with sessions() as s:
                while True:
                    rows = await approvals.newest(
                        s,
                        "acme",
                        status=filters.get("status"),
                        run_id=filters.get("run_id"),
                        after=after,
                        limit=2,
                    )
                    seen += [r.id for r in rows]
                    if len(rows) < 2:
                        return seen
                    after = (rows[-1].created_at, rows[-1].id)

        everything = [f"req-{n:02d}" for n in (6, 5, 4, 3, 2, 1, 0)]
        assert await walk() == everything
        assert await walk(status="pending") == [i for i in everything if i != "req-04"]
        assert await walk(run_id="r2") == ["req-06", "req-03", "req-00"]
        assert await walk(status="pending", run_id="r1") == ["req-05", "req-02", "req-01"]
        async with sessions() as s:
            assert await approvals.newest(s, "globex", status=None, run_id=None, after=None, limit=5) == []
            decided = await approvals.decisions_of(s, ["req-04", "req-05"])
            assert [(d.id, d.request_id) for d in decided] == [("d1", "req-04")]
            assert await approvals.decisions_of(s, []) == []
    finally:
        await engine.dispose()
