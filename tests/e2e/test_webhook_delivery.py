"""Webhooks end to end: a real receiver on 127.0.0.1 that fails at first still gets every event, signed,
with the same id and body on every attempt; each attempt is recorded."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from approvals.webhooks import WebhookVerificationError, verify
from tests.conftest import Stack
from tests.e2e.conftest import Receiver
from tests.e2e.test_gates import decide


async def _register(stack: Stack, url: str, **body: Any) -> dict[str, Any]:
    r = await stack.http.post("/v1/webhooks", json={"url": url, **body}, headers=stack.auth("admin"))
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    assert created["secret"].startswith("whsec_")
    return created


async def _deliveries(stack: Stack, webhook_id: str) -> dict[str, Any]:
    """The endpoint's deliveries once each delivery workflow has finished (waits on Temporal, not time)."""
    url = f"/v1/webhooks/{webhook_id}/deliveries"
    page: dict[str, Any] = (await stack.http.get(url, headers=stack.auth("admin"))).json()
    for d in page["items"]:
        await stack.client.get_workflow_handle(f"webhook-delivery-{d['id']}").result()
    page = (await stack.http.get(url, headers=stack.auth("admin"))).json()
    return page


async def test_a_receiver_that_fails_at_first_gets_every_event_signed_and_unchanged(
    stack: Stack, flaky_receiver: Receiver
) -> None:
    hook = await _register(stack, flaky_receiver.url)
    assert set(hook["events"]) == {
        "run.completed",
        "run.failed",
        "approval.requested",
        "approval.decided",
        "approval.expired",
        "agent.alert",
    }
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    assert (await decide(stack, item, "alice")).status_code == 201
    assert (await stack.result(run["id"]))["status"] == "completed"

    delivered = await flaky_receiver.wait_delivered(3)
    now = time.time()
    events = {}
    for message_id, attempts in delivered.items():
        assert [a.answered for a in attempts] == [500, 500, 200]
        assert len({a.body for a in attempts}) == 1  # the same bytes on every attempt
        for a in attempts:
            assert a.headers["webhook-id"] == message_id
            assert a.headers["content-type"] == "application/json"
            verify(hook["secret"], a.headers, a.body, now=now)
        payload = json.loads(attempts[0].body)
        events[payload["type"]] = payload
    assert set(events) == {"approval.requested", "approval.decided", "run.completed"}
    assert events["approval.requested"]["data"]["request_id"] == item["id"]
    assert events["approval.requested"]["data"]["arguments_hash"] == item["arguments_hash"]
    assert "arguments" not in events["approval.requested"]["data"]
    assert events["approval.decided"]["data"]["status"] == "approved"
    assert events["approval.decided"]["data"]["decision"]["principal_id"] == stack.principals["alice"]
    assert events["run.completed"]["data"]["run_id"] == run["id"]
    assert events["run.completed"]["data"]["links"]["run"] == f"/v1/runs/{run['id']}"
    assert "output" not in events["run.completed"]["data"]  # content is read through the API, not pushed
    assert events["run.completed"]["data"]["output_hash"]

    page = await _deliveries(stack, hook["id"])
    assert len(page["items"]) == 3
    for d in page["items"]:
        assert d["status"] == "delivered" and d["message_id"] in delivered
        assert [a["status_code"] for a in d["attempts"]] == [500, 500, 200]
        assert [a["attempt"] for a in d["attempts"]] == [1, 2, 3]
        assert d["attempts"][0]["error"] == "the receiver answered 500"


async def test_only_subscribed_events_go_to_an_endpoint_and_a_removed_one_gets_nothing(
    stack: Stack, receiver: Receiver
) -> None:
    only_done = await _register(stack, receiver.url, events=["run.completed"])
    removed = await _register(stack, receiver.url + "?removed=1")
    gone = await stack.http.delete(f"/v1/webhooks/{removed['id']}", headers=stack.auth("admin"))
    assert gone.status_code == 204
    again = await stack.http.delete(f"/v1/webhooks/{removed['id']}", headers=stack.auth("admin"))
    assert again.status_code == 404
    listed = (await stack.http.get("/v1/webhooks", headers=stack.auth("admin"))).json()
    assert [w["id"] for w in listed["items"]] == [only_done["id"]] and "secret" not in listed["items"][0]

    run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    await stack.result(run["id"])
    [(message_id, [request])] = (await receiver.wait_delivered(1)).items()
    assert json.loads(request.body)["type"] == "run.completed"
    [delivery] = (await _deliveries(stack, only_done["id"]))["items"]
    assert delivery["message_id"] == message_id and delivery["status"] == "delivered"
    assert len(receiver.requests) == 1


async def test_tampering_is_detected(stack: Stack, receiver: Receiver) -> None:
    hook = await _register(stack, receiver.url, events=["run.completed"])
    run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    await stack.result(run["id"])
    [[request]] = (await receiver.wait_delivered(1)).values()
    now = time.time()
    verify(hook["secret"], request.headers, request.body, now=now)
    tampered = request.body.replace(b"completed", b"cancelled")
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(hook["secret"], request.headers, tampered, now=now)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(hook["secret"], request.headers, request.body, now=now + 3600)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_webhook_urls_must_be_public_http_unless_allowed(make_stack: Any, db_url: str) -> None:
    async with make_stack(db_url, worker=False, webhook_allow_private=False) as stack:
        for url, why in [
            ("ftp://example.com/x", "only http and https"),
            ("http://127.0.0.1:8080/x", "private, loopback or link-local"),
            ("http://localhost/x", "private, loopback or link-local"),
            ("http://169.254.169.254/latest/meta-data", "private, loopback or link-local"),
            ("http://10.1.2.3/x", "private, loopback or link-local"),
            ("http://[::1]/x", "private, loopback or link-local"),
            ("http://[::ffff:127.0.0.1]/x", "private, loopback or link-local"),
            ("https://user:secret@example.com/x", "credentials"),
            ("https:///nohost", "no host"),
        ]:
            r = await stack.http.post("/v1/webhooks", json={"url": url}, headers=stack.auth("admin"))
            assert r.status_code == 422, (url, r.text)
            problem = r.json()
            assert problem["type"].endswith("/invalid") and why in problem["detail"], (url, problem)
            assert problem["errors"] == [{"field": "url", "message": problem["detail"].removeprefix("url: ")}]
        unknown = await stack.http.post(
            "/v1/webhooks",
            json={"url": "https://203.0.113.9/x", "events": ["run.exploded"]},
            headers=stack.auth("admin"),
        )
        assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"].startswith("events")


POLICY = """
approvers: [support, finance]
defaults:
  roles: ["approver:support"]
rules:
  - id: reads
    tool: "get_*"
    outcome: allow
  - id: refunds-timed
    tool: issue_refund
    outcome: require_approval
    roles: ["approver:finance"]
    ttl: 1h
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_expiry_is_sent_as_approval_expired(
    skipping_stack: Any, skipping_env: WorkflowEnvironment, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    async with skipping_stack(db_url, policy_path=policy) as stack:
        await _register(stack, receiver.url, events=["approval.expired"])
        run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
        [item] = await stack.pending(run["id"])
        await skipping_env.sleep(timedelta(minutes=61))
        [[request]] = (await receiver.wait_delivered(1)).values()
        payload = json.loads(request.body)
        assert payload["type"] == "approval.expired"
        assert payload["data"]["request_id"] == item["id"] and payload["data"]["status"] == "expired"


async def test_the_owner_is_alerted_when_a_run_spends_its_budget_and_when_it_is_abandoned(
    stack: Stack, receiver: Receiver
) -> None:
    await _register(stack, receiver.url, events=["agent.alert"])
    r = await stack.http.post(
        "/v1/runs",
        headers=stack.auth("trigger"),
        json={
            "agent": "support_drafting",
            "input": {"ticket_id": "T-1001"},
            "budget": {"max_model_calls": 1},
        },
    )
    run = r.json()
    [item] = await stack.pending(run["id"])
    assert item["tool"] == "escalate_to_person"
    reply = await decide(stack, item, "alice", action="reject", reason="not worth a person's time")
    assert reply.status_code == 201, reply.text
    assert (await stack.result(run["id"]))["status"] == "failed"
    delivered = await receiver.wait_delivered(2)
    alerts = sorted(
        (json.loads(rs[-1].body) for rs in delivered.values()), key=lambda p: str(p["data"]["alert"])
    )
    assert [a["type"] for a in alerts] == ["agent.alert", "agent.alert"]
    assert [a["data"]["alert"] for a in alerts] == ["budget_exhausted", "run_failed"]
    assert all(a["data"]["agent"] == "support_drafting" and a["data"]["run_id"] == run["id"] for a in alerts)
    assert alerts[0]["data"]["request_id"] == item["id"] and alerts[1]["data"]["reason"] == "abandoned"


async def test_a_chat_endpoint_gets_who_must_decide_what_and_a_link_to_the_inbox(
    stack: Stack, receiver: Receiver
) -> None:
    hook = await _register(stack, receiver.url, events=["approval.requested", "agent.alert"], format="slack")
    assert hook["format"] == "slack"
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    [message] = [json.loads(rs[-1].body) for rs in (await receiver.wait_delivered(1)).values()]
    text = message["text"]
    assert set(message) == {"text"}
    assert "support_drafting wants to run `issue_refund`" in text and "approver:finance" in text
    assert "time left: 23 h 59 min" in text or "time left: 24 h 0 min" in text
    assert (
        f"<http://127.0.0.1:{stack.settings.api_port}/ui/approvals/{item['id']}|Open it in the inbox>" in text
    )
    # Nothing a customer wrote, and no arguments, leave for the chat.
    assert "O-5002" not in text and "250" not in text
    r = await stack.http.post(
        "/v1/webhooks", json={"url": receiver.url, "format": "teams"}, headers=stack.auth("admin")
    )
    assert r.status_code == 422
