"""Approval gates end to end: pause, decide (approve, edit, reject, respond), authorisation, exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from sqlalchemy import func, select

from agents.playbook import call, final_answer, tool_results
from agents.scripted import ScriptedChatModel
from agents.spec import AgentSpec
from api.auth import create_key
from approvals.models import AuditEvent
from tests.conftest import Stack
from tools.business import Refund


async def refunds(stack: Stack, order_id: str = "O-5002") -> list[Refund]:
    async with stack.store.sessions() as s:
        return list((await s.scalars(select(Refund).where(Refund.order_id == order_id))).all())


async def decide(stack: Stack, item: dict[str, Any], key: str, **body: Any) -> Any:
    payload = {"action": "approve", "arguments_hash": item["arguments_hash"], **body}
    return await stack.http.post(
        f"/v1/approvals/{item['id']}/decisions", json=payload, headers=stack.auth(key)
    )


async def test_refund_pauses_then_one_approval_issues_exactly_one_refund(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    got = (await stack.http.get(f"/v1/runs/{run['id']}", headers=stack.auth("trigger"))).json()
    assert got["status"] == "awaiting_approval"
    assert item["tool"] == "issue_refund" and item["arguments"]["amount"] == 250.0
    assert item["rule"] == "refund-needs-finance" and item["quorum"] == 1
    assert item["policy_version"] and "approver:finance" in item["required_roles"]
    assert item["reason"] and item["expires_at"]
    assert await refunds(stack) == []

    r = await decide(stack, item, "alice")
    assert r.status_code == 201, r.text
    assert r.json()["request_status"] == "approved"
    done = await stack.result(run["id"])
    assert done["status"] == "completed"
    assert "refunded 250.00" in done["output"]["reply"]
    [refund] = await refunds(stack)
    assert refund.amount == 250.0 and refund.idempotency_key == item["id"]

    again = await decide(stack, item, "alice")
    assert again.status_code == 200 and again.json()["decision_id"] == r.json()["decision_id"]
    late = await decide(stack, item, "bob", action="reject", reason="too late")
    assert late.status_code == 409 and late.json()["type"].endswith("/already_decided")
    shown = (await stack.http.get(f"/v1/approvals/{item['id']}", headers=stack.auth("auditor"))).json()
    assert shown["status"] == "approved" and [d["action"] for d in shown["decisions"]] == ["approve"]
    types = await ledger_types(stack, run["id"])
    # The run resumes on the decision's record, before the approved call runs, and says so once.
    assert types.count("run.resumed") == 1
    decided, resumed = types.index("approval.decided"), types.index("run.resumed")
    refunded = last(types, "tool.executed")
    assert types.index("approval.requested") < decided < resumed < refunded


def last(types: list[str], name: str) -> int:
    """Where ``name`` last occurs in ``types``."""
    return len(types) - 1 - types[::-1].index(name)


async def ledger_types(stack: Stack, run_id: str) -> list[str]:
    """The run's ledger event types in chain order."""
    async with stack.sessions() as s:
        query = select(AuditEvent.type).where(AuditEvent.run_id == run_id).order_by(AuditEvent.seq)
        return list(await s.scalars(query))


async def test_reject_never_runs_and_the_run_explains(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    no_reason = await decide(stack, item, "alice", action="reject")
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
    r = await decide(stack, item, "alice", action="reject", reason="damage not shown in photos")
    assert r.status_code == 201 and r.json()["request_status"] == "rejected"
    done = await stack.result(run["id"])
    assert done["status"] == "completed"
    assert "damage not shown in photos" in done["output"]["reply"]
    assert await refunds(stack) == []
    shown = (await stack.http.get(f"/v1/approvals/{item['id']}", headers=stack.auth("alice"))).json()
    assert shown["status"] == "rejected"


async def test_edit_runs_exactly_the_edited_arguments(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    edited = {**item["arguments"], "amount": 120.0}
    bad = await decide(stack, item, "alice", action="edit", arguments={**edited, "amount": -5})
    assert bad.status_code == 422 and "arguments.amount" in bad.json()["detail"]
    r = await decide(stack, item, "alice", action="edit", arguments=edited)
    assert r.status_code == 201 and r.json()["request_status"] == "approved"
    done = await stack.result(run["id"])
    assert "refunded 120.00" in done["output"]["reply"]
    [refund] = await refunds(stack)
    assert refund.amount == 120.0


async def test_respond_sends_the_message_to_the_agent_instead(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    r = await decide(stack, item, "bob", action="respond", message="offer a replacement base instead")
    assert r.status_code == 201 and r.json()["request_status"] == "responded"
    done = await stack.result(run["id"])
    assert "offer a replacement base instead" in done["output"]["reply"]
    assert await refunds(stack) == []


async def test_who_may_decide(stack: Stack) -> None:
    # A principal who triggers runs and also approves: separation of duties still refuses its own run.
    async with stack.sessions() as s, s.begin():
        _, both = await create_key(s, tenant_id="acme", name="both", roles=["trigger", "approver:finance"])
    stack.keys["both"] = both
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"}, key="both")
    [item] = await stack.pending(run["id"])
    own = await decide(stack, item, "both")
    assert own.status_code == 403 and own.json()["type"].endswith("/forbidden")
    wrong_role = await decide(stack, item, "logistics")
    assert wrong_role.status_code == 403
    trigger_only = await decide(stack, item, "trigger")
    assert trigger_only.status_code == 403
    stale = await decide(stack, {**item, "arguments_hash": "0" * 64}, "alice")
    assert stale.status_code == 409 and stale.json()["type"].endswith("/stale_arguments")
    assert (await decide(stack, item, "alice")).status_code == 201
    await stack.result(run["id"])
    assert len(await refunds(stack)) == 1


async def test_quorum_two_needs_two_distinct_approvers(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1004"})
    [item] = await stack.pending(run["id"])
    assert item["quorum"] == 2 and item["rule"] == "refund-large-two-approvers"
    first = await decide(stack, item, "bob")
    assert first.status_code == 201 and first.json()["request_status"] == "pending"
    twice = await decide(stack, item, "bob", reason="again")
    assert twice.status_code == 409
    assert await refunds(stack, "O-5004") == []
    second = await decide(stack, item, "carol")
    assert second.status_code == 201 and second.json()["request_status"] == "approved"
    await stack.result(run["id"])
    [refund] = await refunds(stack, "O-5004")
    assert refund.amount == 3100.0
    types = await ledger_types(stack, run["id"])
    # The first approval leaves the request pending: only the second resumes the run.
    assert types.count("approval.decided") == 2 and types.count("run.resumed") == 1
    assert last(types, "approval.decided") < types.index("run.resumed")


async def test_fifty_concurrent_decisions_have_exactly_one_outcome(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    bodies = [
        {"action": "reject", "reason": f"reason {i}"} if i % 2 else {"reason": f"ok {i}"} for i in range(50)
    ]
    responses = await asyncio.gather(
        *(decide(stack, item, "alice" if i % 3 else "bob", **b) for i, b in enumerate(bodies))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1 and codes.count(409) == 49, codes
    await stack.result(run["id"])
    shown = (await stack.http.get(f"/v1/approvals/{item['id']}", headers=stack.auth("alice"))).json()
    assert len(shown["decisions"]) == 1
    assert len(await refunds(stack)) == (1 if shown["status"] == "approved" else 0)


async def test_identical_concurrent_decisions_answer_201_once_and_200_for_the_replays(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    paused = (await stack.http.get(f"/v1/runs/{run['id']}", headers=stack.auth("trigger"))).json()
    # While it waits, the run already shows what its model turns used.
    assert paused["status"] == "awaiting_approval"
    assert paused["usage"]["model_calls"] == 4 and paused["usage"]["input_tokens"] > 0
    responses = await asyncio.gather(
        *(decide(stack, item, "alice", reason="damaged base") for _ in range(20))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 19 + [201], codes
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1
    assert responses[0].json()["request_status"] == "approved"
    await stack.result(run["id"])
    assert len(await refunds(stack)) == 1
    again = await decide(stack, item, "alice", reason="damaged base")
    assert again.status_code == 200 and again.json() == responses[0].json()


async def test_a_decision_on_a_run_whose_workflow_is_gone_is_409_not_a_retry_loop(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    # Terminated from outside (an operator, Temporal's UI): the projection still shows the request pending.
    await stack.client.get_workflow_handle(f"run-{run['id']}").terminate("operator")
    answer = await decide(stack, item, "alice")
    assert answer.status_code == 409 and "no longer accepts decisions" in answer.json()["detail"]
    assert await refunds(stack) == []


def _parallel_refunds(messages: Sequence[BaseMessage]) -> AIMessage:
    results = tool_results(messages)
    if "issue_refund" in results:
        lines = [f"{status}: {content}" for status, content in results["issue_refund"]]
        answer = {"ticket_id": "T-1002", "reply": "\n".join(lines), "escalated": False, "reason": None}
        return final_answer(messages, answer)
    if "get_ticket" not in results:
        # Read the ticket first: the order id then comes from the tenant's record (an order id the model
        # made up is denied by the demo policy's provenance rule).
        return call(messages, "get_ticket", {"ticket_id": "T-1002"})
    order = "O-5002"
    calls = [
        {
            "name": "issue_refund",
            "args": {"order_id": order, "amount": a, "reason": f"part {a}"},
            "id": f"call_{a}",
        }
        for a in (100.0, 150.0)
    ]
    calls.append({"name": "wire_money", "args": {"to": "attacker", "amount": 1e6}, "id": "call_wire"})
    return AIMessage(content="Two partial refunds.", tool_calls=calls)  # type: ignore[arg-type]


def scripted(playbook: Any) -> Any:
    return lambda spec: ScriptedChatModel(playbook=playbook)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_parallel_calls_mixed_decisions_and_blocked_tool(make_stack: Any, db_url: str) -> None:
    async with make_stack(db_url, model_for=scripted(_parallel_refunds)) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
        items = sorted(await stack.pending(run["id"], 2), key=lambda i: i["arguments"]["amount"])
        assert [i["arguments"]["amount"] for i in items] == [100.0, 150.0]
        assert (await decide(stack, items[0], "alice")).status_code == 201
        assert await refunds(stack) == []  # nothing in the turn runs until every gated call is decided
        assert (
            await decide(stack, items[1], "alice", action="reject", reason="one is enough")
        ).status_code == 201
        done = await stack.result(run["id"])
        assert [r.amount for r in await refunds(stack)] == [100.0]
        assert "one is enough" in done["output"]["reply"]
        async with stack.sessions() as s:
            blocked = list(await s.scalars(select(AuditEvent).where(AuditEvent.type == "tool.blocked")))
        assert [b.data["tool"] for b in blocked] == ["wire_money"]
        assert "no tool named 'wire_money'" in str(blocked[0].data["reason"])


async def _count(stack: Stack, model: Any) -> int:
    async with stack.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


def test_agent_specs_only_offer_granted_tools() -> None:
    from agents.catalog import AGENTS

    spec: AgentSpec = AGENTS["support_drafting"]
    assert set(spec.tools()) == {
        "get_ticket",
        "get_order",
        "search_policies",
        "get_policy_passage",
        "issue_refund",
        "send_customer_reply",
    }


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_approval_acts_only_once_it_is_on_record(
    make_stack: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError
    from temporalio import activity

    import workers.activities as writes
    from approvals.models import AuditEvent

    healthy = asyncio.Event()
    refused_in_step = asyncio.Event()
    original = writes._apply

    async def flaky(session: Any, c: Any, *args: Any, **kw: Any) -> bool:
        if c.decision is not None and not healthy.is_set():
            if activity.in_activity():
                refused_in_step.set()
            raise OperationalError("UPDATE approval_requests", {}, Exception("database is unavailable"))
        return await original(session, c, *args, **kw)

    monkeypatch.setattr(writes, "_apply", flaky)
    async with make_stack(db_url) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
        [item] = await stack.pending(run["id"])
        # The workflow takes the decision; neither the API nor the turn that would act on it can record it.
        answer = await decide(stack, item, "alice")
        assert answer.status_code == 503, answer.text
        assert "send the same decision again" in answer.json()["detail"]
        # The turn tries to record it before it acts (it would not get here if it acted first).
        await asyncio.wait_for(refused_in_step.wait(), timeout=30)
        # Not on record, so nothing ran.
        assert await refunds(stack) == []
        shown = (await stack.http.get(f"/v1/approvals/{item['id']}", headers=stack.auth("alice"))).json()
        assert shown["status"] == "pending" and shown["decisions"] == []
        healthy.set()
        # The same decision again: its outcome, recorded now (by this request, or by the turn if first).
        again = await decide(stack, item, "alice")
        assert again.status_code in (200, 201), again.text
        assert again.json()["request_status"] == "approved"
        done = await stack.result(run["id"])
        assert done["status"] == "completed" and len(await refunds(stack)) == 1
        async with stack.sessions() as s:
            events = {
                e.id: e for e in await s.scalars(select(AuditEvent).where(AuditEvent.run_id == run["id"]))
            }
        [executed] = [
            e for e in events.values() if e.type == "tool.executed" and e.data["tool"] == "issue_refund"
        ]
        [decided] = executed.data["approval_events"]
        assert decided in events and events[decided].type == "approval.decided"
        assert events[decided].seq < executed.seq


NOTIFY_POLICY = """
approvers: [support, finance]
defaults: {roles: ["approver:support"]}
rules:
  - {id: reads, tool: "get_*", outcome: allow}
  - {id: reads-search, tool: "search_*", outcome: allow}
  - {id: small-refund-told, tool: issue_refund, when: "args.amount <= 50", outcome: allow,
     notify: ["approver:finance"]}
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_allowed_call_with_notify_runs_and_tells_the_roles(
    make_stack: Any, db_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "notify.yaml"
    policy.write_text(NOTIFY_POLICY)
    async with make_stack(db_url, policy_path=policy) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1003"})
        done = await stack.result(run["id"])
        assert done["status"] == "completed"
        assert [r.amount for r in await refunds(stack, "O-5003")] == [20.0]
        events = (
            await stack.http.get(
                f"/v1/audit/events?run_id={run['id']}&type=policy.notified", headers=stack.auth("auditor")
            )
        ).json()["items"]
    [told] = events
    assert told["data"]["roles"] == ["approver:finance"] and told["data"]["rule"] == "small-refund-told"
