"""The normal path under load: many runs and decisions at once on the embedded default and on PostgreSQL.

Fifty concurrent runs all complete with no server error; ten concurrent paused runs are approved at once and
each executes its refund exactly once; the ledger still verifies. The API, the worker and the database are
the real ones (one process, one connection pool: the tightest case for SQLite's single writer).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from approvals import audit
from approvals.models import ApprovalDecision, AuditEvent
from tests.conftest import Stack
from tools.business import Effect, Refund

RUNS = 50
GATED = 10
UNLIMITED = {"runs_per_minute": 0, "max_active_runs_per_tenant": 0, "demo_sandbox": True}


async def _post(stack: Stack, ticket: str) -> dict[str, Any]:
    r = await stack.http.post(
        "/v1/runs",
        json={"agent": "support_drafting", "input": {"ticket_id": ticket}},
        headers=stack.auth("trigger"),
    )
    assert r.status_code == 201, r.text
    run: dict[str, Any] = r.json()
    return run


async def test_fifty_concurrent_runs_and_ten_concurrent_approvals(make_stack: Any, db_url: str) -> None:
    async with make_stack(db_url, **UNLIMITED) as stack:
        runs = await asyncio.gather(*(_post(stack, "T-1001") for _ in range(RUNS)))
        # Reads go on while the runs do: none of them may fail or wait on a lock for long.
        listing = await stack.http.get("/v1/runs?limit=100", headers=stack.auth("auditor"))
        assert listing.status_code == 200, listing.text
        done = await asyncio.gather(*(stack.result(r["id"]) for r in runs))
        assert [d["status"] for d in done] == ["completed"] * RUNS

        gated = await asyncio.gather(*(_post(stack, "T-1002") for _ in range(GATED)))
        items = [(await stack.pending(r["id"]))[0] for r in gated]
        answers = await asyncio.gather(
            *(
                stack.http.post(
                    f"/v1/approvals/{item['id']}/decisions",
                    json={"action": "approve", "arguments_hash": item["arguments_hash"]},
                    headers=stack.auth("alice"),
                )
                for item in items
            )
        )
        assert [a.status_code for a in answers] == [201] * GATED, [a.text for a in answers]
        finished = await asyncio.gather(*(stack.result(r["id"]) for r in gated))
        assert [f["status"] for f in finished] == ["completed"] * GATED

        async with stack.store.sessions() as s:
            effects = (
                await s.scalars(select(Effect).where(Effect.idempotency_key.in_([i["id"] for i in items])))
            ).all()
            refunds = await s.scalar(select(func.count()).select_from(Refund))
        # One refund per approval, none twice; the demo sandbox lets every run refund the same demo order.
        assert len(effects) == GATED and all(e.result["refunded"] for e in effects)
        assert refunds == GATED
        async with stack.sessions() as s:
            assert (await audit.verify(s)).ok
            ledger = (
                await s.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.run_id.in_([r["id"] for r in gated]))
                    .order_by(AuditEvent.seq)
                )
            ).all()
            decisions = (
                await s.scalars(
                    select(ApprovalDecision).where(ApprovalDecision.request_id.in_([i["id"] for i in items]))
                )
            ).all()
        # Each decision is written by the API and by the turn that acts on it, whichever comes first: it is on
        # record once, with the run's resumption, before the refund it allowed.
        for r in gated:
            kinds = [
                f"{e.type}:{e.data['tool']}" if e.type == "tool.executed" else e.type
                for e in ledger
                if e.run_id == r["id"]
            ]
            assert kinds.count("approval.decided") == 1 and kinds.count("run.resumed") == 1, kinds
            assert kinds.index("approval.decided") < kinds.index("tool.executed:issue_refund"), kinds
        assert sorted(d.request_id for d in decisions) == sorted(i["id"] for i in items)
