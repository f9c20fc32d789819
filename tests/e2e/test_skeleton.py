"""The walking skeleton end to end: HTTP → database → Temporal → worker → LangGraph → tools → database."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select

from approvals.models import AuditEvent
from countersign.models import Run
from tests.conftest import Stack


async def test_demo_run_completes_with_read_tools_only(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    assert run["status"] == "running"
    done = await stack.result(run["id"])
    assert done["status"] == "completed", done
    assert "O-5001" in done["output"]["reply"]
    assert done["output"]["tools_used"] == ["get_order", "get_ticket", "search_policies"]
    assert done["usage"]["model_calls"] == 4
    assert done["usage"]["input_tokens"] > 0
    async with stack.sessions() as s:
        types = list(
            await s.scalars(
                select(AuditEvent.type).where(AuditEvent.run_id == run["id"]).order_by(AuditEvent.seq)
            )
        )
    assert types[0] == "run.started" and types[-1] == "run.completed"
    assert types.count("tool.executed") == 3


async def test_the_turn_that_answers_records_the_end_and_the_workflow_writes_none(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    handle = stack.client.get_workflow_handle(f"run-{run['id']}")
    result = await handle.result()
    done = (await stack.http.get(f"/v1/runs/{run['id']}", headers=stack.auth("trigger"))).json()
    # The row shows what the workflow returned: the answer and the usage of every model call.
    assert done["status"] == "completed" and done["output"] == result["output"]
    assert done["usage"]["model_calls"] == result["usage"]["model_calls"] == 4
    async with stack.sessions() as s:
        events = list(
            await s.scalars(select(AuditEvent).where(AuditEvent.run_id == run["id"]).order_by(AuditEvent.seq))
        )
    [end] = [e for e in events if e.type == "run.completed"]
    # Written with the answering turn's events, after them.
    assert events[-1] is end and events[-2].type == "model.called"
    # No local activity at all: the API recorded the start, the turns their events and the end.
    history = [e async for e in handle.fetch_history_events()]
    markers = [
        e.marker_recorded_event_attributes.marker_name
        for e in history
        if e.HasField("marker_recorded_event_attributes")
    ]
    assert "core_local_activity" not in markers, markers


async def test_same_idempotency_key_same_run_other_body_409(stack: Stack) -> None:
    key = str(uuid.uuid4())
    body = {"agent": "support_drafting", "input": {"ticket_id": "T-1001"}}
    h = {**stack.auth("trigger"), "Idempotency-Key": key}
    first = await stack.http.post("/v1/runs", json=body, headers=h)
    again = await stack.http.post("/v1/runs", json=body, headers=h)
    other = await stack.http.post("/v1/runs", json={**body, "input": {"ticket_id": "T-1002"}}, headers=h)
    assert first.status_code == 201
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")
    assert other.json()["type"].endswith("/idempotency_conflict")
    await stack.result(first.json()["id"])


async def test_concurrent_requests_with_one_idempotency_key_start_one_run(stack: Stack) -> None:
    h = {**stack.auth("trigger"), "Idempotency-Key": str(uuid.uuid4())}
    body = {"agent": "support_drafting", "input": {"ticket_id": "T-1001"}}
    before = await _runs(stack)
    answers = await asyncio.gather(*(stack.http.post("/v1/runs", json=body, headers=h) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert await _runs(stack) == before + 1
    await stack.result(answers[0].json()["id"])


async def _runs(stack: Stack) -> int:
    async with stack.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(Run)) or 0)


async def test_refusals_are_problems_and_write_nothing(stack: Stack) -> None:
    before = await _runs(stack)
    ok = {"agent": "support_drafting", "input": {"ticket_id": "T-1001"}}
    cases = [
        (
            await stack.http.post(
                "/v1/runs", json={"agent": "nope", "input": {}}, headers=stack.auth("trigger")
            ),
            404,
            "not_found",
        ),
        (
            await stack.http.post(
                "/v1/runs",
                json={"agent": "support_drafting", "input": {"ticket_id": 7}},
                headers=stack.auth("trigger"),
            ),
            422,
            "invalid",
        ),
        (await stack.http.post("/v1/runs", json=ok), 401, "unauthorized"),
        (
            await stack.http.post("/v1/runs", json=ok, headers={"Authorization": "Bearer cs_nope_nope"}),
            401,
            "unauthorized",
        ),
        (
            await stack.http.post(
                "/v1/runs",
                json={**ok, "input": {"ticket_id": "T-1" + "0" * 100_000}},
                headers=stack.auth("trigger"),
            ),
            413,
            "payload_too_large",
        ),
        (await stack.http.post("/v1/runs", json=ok, headers=stack.auth("auditor")), 403, "forbidden"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].endswith("/" + code)
    invalid = cases[1][0].json()
    assert invalid["errors"][0]["field"] == "input.ticket_id"
    assert "input.ticket_id" in invalid["detail"]
    assert await _runs(stack) == before


async def test_runs_are_listed_and_read_with_any_reader_role(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    await stack.result(run["id"])
    older = await stack.start("support_drafting", {"ticket_id": "T-1003"})
    await stack.result(older["id"])
    page = (await stack.http.get("/v1/runs?limit=1", headers=stack.auth("auditor"))).json()
    assert [r["id"] for r in page["items"]] == [older["id"]]
    auditor = stack.auth("auditor")
    rest = await stack.http.get(f"/v1/runs?limit=1&cursor={page['next_cursor']}", headers=auditor)
    assert [r["id"] for r in rest.json()["items"]] == [run["id"]] and rest.json()["next_cursor"] is None
    agents = (await stack.http.get("/v1/agents", headers=stack.auth("trigger"))).json()
    by_name = {a["name"]: a for a in agents}
    assert set(by_name) == {"support_drafting", "claims_triage", "shipment_exceptions", "finance_variance"}
    assert by_name["support_drafting"]["example_input"] == {"ticket_id": "T-1001"}
    assert all(a["owner"]["team"] and a["owner"]["role"].startswith("approver:") for a in agents)
    assert (await stack.http.get("/v1/healthz")).status_code == 200
    ready = await stack.http.get("/v1/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "temporal": "ok"}
