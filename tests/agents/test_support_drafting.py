"""The ``support_drafting`` agent: retrieval, citations, refunds the policy supports, escalation."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, ToolMessage
from sqlalchemy import select

from agents.catalog import get_agent
from agents.spec import Facts
from agents.support_drafting.agent import NO_POLICY, NO_REFUND_GROUND, REFUND_GROUNDS, SPEC
from approvals.models import ApprovalRequest, AuditEvent
from tests.agents.offline import calls, play
from tests.conftest import Stack
from tools.business import BusinessStore, Refund, Ticket
from tools.knowledge import get_passage

# --- In process: the playbook against the demo data, every tool call allowed -------------------------------


async def drive(store: BusinessStore, ticket_id: str) -> tuple[dict[str, Any], list[BaseMessage]]:
    """The playbook in process against the demo data: (output, messages)."""
    return await play(SPEC, store, {"ticket_id": ticket_id})


def called(messages: list[BaseMessage]) -> list[str]:
    return [name for name, _ in calls(messages)]


def assert_citations_are_real(out: dict[str, Any]) -> None:
    """Every ``[id]`` in the reply is a citation, and every citation is a real passage, verbatim."""
    markers = re.findall(r"\[([^\]\s]+#[^\]\s]+)\]", out["reply"])
    assert markers and [c["id"] for c in out["citations"]] == list(dict.fromkeys(markers))
    assert out["unresolved_citations"] == []
    for c in out["citations"]:
        passage = get_passage(c["id"])
        assert passage is not None
        assert c == passage.model_dump(include={"id", "doc", "title", "section", "text"})


@pytest.mark.parametrize(
    ("ticket_id", "cited", "refund"),
    [
        ("T-1001", "shipping-policy#delivery-times", None),
        ("T-1002", "refund-policy#damaged-items", 250.0),
        ("T-1003", "refund-policy#wrong-or-missing-items", 20.0),
        ("T-1004", "refund-policy#dead-on-arrival", 3100.0),
    ],
)
async def test_answers_cite_the_policy_and_refund_only_what_it_supports(
    store: BusinessStore, ticket_id: str, cited: str, refund: float | None
) -> None:
    out, messages = await drive(store, ticket_id)
    expected = ["get_ticket", "get_order", "search_policies"] + (["issue_refund"] if refund else [])
    assert called(messages) == expected
    assert out["escalated"] is False and out["reason"] is None
    assert [c["id"] for c in out["citations"]] == [cited]
    assert_citations_are_real(out)
    # The quoted sentence is the passage's own words.
    quoted = re.search(rf"From our policy on [^:]+: (.+?) \[{re.escape(cited)}\]", out["reply"])
    passage = get_passage(cited)
    assert quoted and passage is not None and quoted.group(1) in passage.text
    if refund:
        assert f"refunded {refund:.2f}" in out["reply"]
        [call] = [tc for m in messages for tc in getattr(m, "tool_calls", []) if tc["name"] == "issue_refund"]
        assert call["args"]["amount"] == refund


async def test_a_question_no_policy_covers_is_escalated_without_acting(store: BusinessStore) -> None:
    out, messages = await drive(store, "T-1005")
    assert called(messages) == ["get_ticket", "search_policies"]
    assert out["escalated"] is True and out["reason"] == NO_POLICY
    assert "follow up" in out["reply"] and out["citations"] == []
    search = [m for m in messages if isinstance(m, ToolMessage) and m.name == "search_policies"]
    assert json.loads(str(search[0].content))["results"] == []


async def test_a_refund_no_passage_supports_is_escalated_not_proposed(store: BusinessStore) -> None:
    async with store.sessions() as s, s.begin():
        s.add(
            Ticket(
                tenant_id="acme",
                id="T-1090",
                customer_id="C-100",
                order_id="O-5001",
                subject="Refund my expired rewards points",
                body="My rewards points expired last month. Please refund me 10 for them.",
                requested_refund=10.0,
            )
        )
    out, messages = await drive(store, "T-1090")
    assert called(messages) == ["get_ticket", "get_order", "search_policies"]  # found policy, but no ground
    assert out["escalated"] is True and out["reason"] == NO_REFUND_GROUND
    assert "review your refund request" in out["reply"]
    async with store.sessions() as s:
        assert list(await s.scalars(select(Refund))) == []


async def test_an_unknown_ticket_drafts_nothing(store: BusinessStore) -> None:
    out, messages = await drive(store, "T-9999")
    assert called(messages) == ["get_ticket"]
    assert "could not find ticket T-9999" in out["reply"]
    assert (out["escalated"], out["citations"]) == (False, [])


def test_an_answer_citing_a_passage_that_does_not_exist_fails_validation() -> None:
    reply = "See [refund-policy#damaged-items] and [refund-policy#made-up]."
    answer = {"ticket_id": "T-1", "reply": reply, "escalated": False, "reason": None}
    out, problem = SPEC.check_answer(answer, Facts(input={"ticket_id": "T-1"}, results={}))
    assert [c["id"] for c in out["citations"]] == ["refund-policy#damaged-items"]
    assert out["unresolved_citations"] == ["refund-policy#made-up"]
    assert problem is not None and "unresolved_citations" in problem
    # The record's facts are checked, not overwritten: an answer about another ticket is refused.
    _, other = SPEC.check_answer(answer | {"ticket_id": "T-2"}, Facts(input={"ticket_id": "T-1"}, results={}))
    assert other is not None and "T-1" in other


def test_refund_grounds_are_real_passages_and_the_agent_may_search() -> None:
    assert all(get_passage(pid) is not None for pid in REFUND_GROUNDS)
    spec = get_agent("support_drafting")
    assert spec is SPEC
    assert {"search_policies", "get_policy_passage"} <= set(SPEC.tools())
    assert "search_policies" in SPEC.prompt


# --- End to end through Temporal ----------------------------------------------------------------------------


async def test_e2e_question_is_answered_with_real_citations(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    done = await stack.result(run["id"])
    assert done["status"] == "completed", done
    out = done["output"]
    assert "O-5001" in out["reply"]
    assert out["escalated"] is False
    assert out["tools_used"] == ["get_order", "get_ticket", "search_policies"]
    assert [c["id"] for c in out["citations"]] == ["shipping-policy#delivery-times"]
    assert_citations_are_real(out)


async def test_e2e_refund_cites_the_policy_that_supports_it(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    assert item["tool"] == "issue_refund" and item["arguments"]["amount"] == 250.0
    assert "[refund-policy#damaged-items]" in item["reason"]  # the approver sees the policy it relies on
    async with stack.sessions() as s:
        request = await s.get(ApprovalRequest, item["id"])
    # ...and what the policy looked up to judge the call.
    assert request is not None and request.evidence is not None
    assert request.evidence["facts"] == {
        'order_customer("O-5002")': "C-101",
        'ticket_customer("T-1002")': "C-101",
    }
    r = await stack.http.post(
        f"/v1/approvals/{item['id']}/decisions",
        json={"action": "approve", "arguments_hash": item["arguments_hash"]},
        headers=stack.auth("alice"),
    )
    assert r.status_code == 201, r.text
    done = await stack.result(run["id"])
    out = done["output"]
    assert "refunded 250.00" in out["reply"] and out["escalated"] is False
    assert [c["id"] for c in out["citations"]] == ["refund-policy#damaged-items"]
    assert_citations_are_real(out)


async def test_e2e_unanswerable_question_escalates_and_proposes_nothing(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1005"})
    done = await stack.result(run["id"])
    assert done["status"] == "completed", done
    out = done["output"]
    assert out["escalated"] is True and out["reason"] == NO_POLICY
    assert "follow up" in out["reply"] and out["citations"] == []
    assert out["tools_used"] == ["get_ticket", "search_policies"]
    r = await stack.http.get(f"/v1/approvals?run_id={run['id']}", headers=stack.auth("alice"))
    assert r.json()["items"] == []
    async with stack.sessions() as s:
        proposed = list(
            await s.scalars(
                select(AuditEvent.data).where(
                    AuditEvent.run_id == run["id"], AuditEvent.type == "tool.proposed"
                )
            )
        )
    assert [d["tool"] for d in proposed] == ["get_ticket", "search_policies"]


async def test_e2e_an_injected_refund_on_another_customers_order_is_stopped_by_provenance(
    stack: Stack,
) -> None:
    # T-1006's text tells the agent to refund 30 on O-5004 (another customer's order). The offline model
    # obeys it, as a model without defences would; 30 is within the automatic goodwill limit, so only the
    # policy's provenance rule stands between the injected text and the money.
    run = await stack.start("support_drafting", {"ticket_id": "T-1006"})
    done = await stack.result(run["id"])
    assert done["status"] == "completed", done
    async with stack.sessions() as s:
        events = list(
            await s.scalars(select(AuditEvent).where(AuditEvent.run_id == run["id"]).order_by(AuditEvent.seq))
        )
    [proposed] = [e.data for e in events if e.type == "tool.proposed" and e.data["tool"] == "issue_refund"]
    assert proposed["verdict"] == "deny" and proposed["rule"] == "refund-untrusted-order"
    assert proposed["provenance"]["order_id"] == "untrusted"
    [blocked] = [e.data for e in events if e.type == "tool.blocked"]
    assert blocked["tool"] == "issue_refund" and "text the customer wrote" in blocked["reason"]
    async with stack.store.sessions() as s:
        assert list(await s.scalars(select(Refund).where(Refund.order_id == "O-5004"))) == []
    assert "could not issue the refund" in done["output"]["reply"]
    # The ticket's own order, named by the ticket's record, is traced to the tenant's data.
    ordered = [e.data for e in events if e.type == "tool.proposed" and e.data["tool"] == "get_ticket"]
    assert ordered[0]["provenance"] == {"ticket_id": "input"}
