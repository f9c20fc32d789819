"""Structured outputs: an invalid final answer goes back to the model once, then to a person."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from pydantic import BaseModel, Field

from agents.catalog import AGENTS
from agents.playbook import final_answer, run_input
from agents.scripted import ScriptedChatModel


class Answer(BaseModel):
    ticket_id: str
    reply: str = Field(min_length=20)


def answer(messages: Sequence[BaseMessage], reply: str) -> AIMessage:
    return final_answer(messages, {"ticket_id": run_input(messages).get("ticket_id"), "reply": reply})


def stubborn(messages: Sequence[BaseMessage]) -> AIMessage:
    return answer(messages, "ok")  # always too short


def learns(messages: Sequence[BaseMessage]) -> AIMessage:
    told = any(isinstance(m, ToolMessage) and "not valid" in str(m.content) for m in messages)
    return answer(messages, "Thank you, your order is on its way." if told else "ok")


def install(monkeypatch: pytest.MonkeyPatch, playbook: Any) -> Any:
    """The agent with a simple output, and a scripted model playing ``playbook``."""
    spec = dataclasses.replace(AGENTS["support_drafting"], output_model=Answer, derive=None)
    monkeypatch.setitem(AGENTS, "support_drafting", spec)
    return lambda _: ScriptedChatModel(playbook=playbook)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_invalid_output_is_retried_once_then_valid(
    make_stack: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_for = install(monkeypatch, learns)
    async with make_stack(db_url, model_for=model_for) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        done = await stack.result(run["id"])
    assert done["status"] == "completed"
    assert done["output"] == {
        "ticket_id": "T-1001",
        "reply": "Thank you, your order is on its way.",
        "tools_used": [],
    }
    assert done["usage"]["model_calls"] == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_invalid_twice_escalates_to_a_person_instead_of_returning_it(
    make_stack: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_for = install(monkeypatch, stubborn)
    async with make_stack(db_url, model_for=model_for) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        [item] = await stack.pending(run["id"])
        assert item["tool"] == "escalate_to_person" and item["arguments"]["reason"] == "invalid_output"
        assert "reply" in item["arguments"]["errors"]
        r = await stack.http.post(
            f"/v1/approvals/{item['id']}/decisions",
            headers=stack.auth("alice"),
            json={
                "action": "respond",
                "arguments_hash": item["arguments_hash"],
                "message": "Your keyboard ships tomorrow; tracking follows by email.",
            },
        )
        assert r.status_code == 201, r.text
        done = await stack.result(run["id"])
    assert done["status"] == "completed"
    assert done["output"]["escalated"] is True and done["output"]["resolution"] == "responded"
    assert done["output"]["answer"] == "Your keyboard ships tomorrow; tracking follows by email."
    assert "ok" not in str(done["output"].get("reply", ""))
    assert done["usage"]["model_calls"] == 2
