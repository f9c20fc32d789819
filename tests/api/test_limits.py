"""Per-key rate limit on starting runs, the tenant's cap on active runs, and the run event stream (SSE)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select

from api.auth import create_key, ensure_tenant
from api.ratelimit import TokenBucket
from approvals.models import AuditEvent
from tests.conftest import Stack
from tests.e2e.test_gates import decide

BODY = {"agent": "support_drafting", "input": {"ticket_id": "T-1001"}}


class Clock:
    """A clock the test moves by hand, so refills are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_rate_limit_per_key_answers_429_with_retry_after(make_stack: Any, db_url: str) -> None:
    async with make_stack(db_url, worker=False, runs_per_minute=2, max_active_runs_per_tenant=0) as stack:
        assert stack.app is not None
        clock = Clock()
        limiter: TokenBucket = stack.app.state.run_limiter
        limiter.clock = clock
        for _ in range(2):
            assert (
                await stack.http.post("/v1/runs", json=BODY, headers=stack.auth("trigger"))
            ).status_code == 201
        refused = await stack.http.post("/v1/runs", json=BODY, headers=stack.auth("trigger"))
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("/rate_limited")
        assert refused.headers["retry-after"] == "30"  # 2 per minute: one token every 30 s

        async with stack.sessions() as s, s.begin():
            _, other = await create_key(s, tenant_id="acme", name="other system", roles=["trigger"])
        other_key = {"Authorization": f"Bearer {other}"}
        assert (await stack.http.post("/v1/runs", json=BODY, headers=other_key)).status_code == 201

        clock.now += 29
        late = await stack.http.post("/v1/runs", json=BODY, headers=stack.auth("trigger"))
        assert late.status_code == 429 and late.headers["retry-after"] == "1"
        clock.now += 1
        assert (
            await stack.http.post("/v1/runs", json=BODY, headers=stack.auth("trigger"))
        ).status_code == 201
        # Reads are not limited.
        assert (await stack.http.get("/v1/runs", headers=stack.auth("trigger"))).status_code == 200


@pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_tenant_cap_on_active_runs(make_stack: Any, db_url: str) -> None:
    async with make_stack(db_url, max_active_runs_per_tenant=1) as stack:
        paused = await stack.start("support_drafting", {"ticket_id": "T-1002"})
        capped = await stack.http.post("/v1/runs", json=BODY, headers=stack.auth("trigger"))
        assert capped.status_code == 429, capped.text
        assert capped.json()["type"].endswith("/active_runs_limit")
        assert "cap is 1" in capped.json()["detail"]

        async with stack.sessions() as s, s.begin():
            await ensure_tenant(s, "globex")
            _, other = await create_key(s, tenant_id="globex", name="globex", roles=["trigger"])
        other_tenant = await stack.http.post(
            "/v1/runs", json=BODY, headers={"Authorization": f"Bearer {other}"}
        )
        assert other_tenant.status_code == 201  # the cap is per tenant
        await stack.client.get_workflow_handle(f"run-{other_tenant.json()['id']}").result()

        cancel = await stack.http.post(f"/v1/runs/{paused['id']}/cancel", headers=stack.auth("trigger"))
        assert cancel.status_code == 202
        await stack.wait_status(paused["id"], {"cancelled"})
        run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        assert (await stack.result(run["id"]))["status"] == "completed"


async def _events(stack: Stack, run_id: str, **headers: str) -> list[dict[str, Any]]:
    """Read the run's SSE stream to its end and parse it."""
    r = await stack.http.get(f"/v1/runs/{run_id}/events", headers={**stack.auth("auditor"), **headers})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in r.text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields:
            events.append({"id": fields["id"], "event": fields["event"], **json.loads(fields["data"])})
    return events


async def test_event_stream_follows_the_run_in_order_and_ends(make_stack: Any, db_url: str) -> None:
    async with make_stack(db_url, events_poll_seconds=0.05) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1002"})

        async def approve() -> None:
            [item] = await stack.pending(run["id"])
            assert (await decide(stack, item, "alice")).status_code == 201

        # The stream is opened while the run is still going; it ends by itself when the run completes.
        streamed, _ = await asyncio.gather(_events(stack, run["id"]), approve())

        async with stack.sessions() as s:
            ledger = list(
                await s.scalars(
                    select(AuditEvent).where(AuditEvent.run_id == run["id"]).order_by(AuditEvent.seq)
                )
            )
        assert [(e["seq"], e["event"]) for e in streamed] == [(e.seq, e.type) for e in ledger]
        assert [int(e["id"]) for e in streamed] == [e.seq for e in ledger]
        types = [e["event"] for e in streamed]
        assert types[-1] == "run.completed"
        assert (
            types.index("approval.requested") < types.index("approval.decided") < types.index("run.completed")
        )
        assert "tool.executed" in types and "run.awaiting_approval" in types

        # Resuming after an event sends only the later ones.
        middle = streamed[len(streamed) // 2]
        resumed = await _events(stack, run["id"], **{"Last-Event-ID": middle["id"]})
        assert resumed == streamed[len(streamed) // 2 + 1 :]

        bad = await stack.http.get(
            f"/v1/runs/{run['id']}/events", headers={**stack.auth("auditor"), "Last-Event-ID": "x"}
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "Last-Event-ID"
        async with stack.sessions() as s, s.begin():
            await ensure_tenant(s, "globex")
            _, other = await create_key(s, tenant_id="globex", name="globex auditor", roles=["auditor"])
        hidden = await stack.http.get(
            f"/v1/runs/{run['id']}/events", headers={"Authorization": f"Bearer {other}"}
        )
        assert hidden.status_code == 404
        assert (
            await stack.http.get(f"/v1/runs/{run['id']}/events", headers=stack.auth("admin"))
        ).status_code == 403
