"""Driving an agent's offline playbook in process, the way the graph reads its final answer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from agents.playbook import run_input, tool_results
from agents.spec import FINAL_ANSWER, AgentSpec, Facts
from tools.business import BusinessStore
from tools.registry import ToolContext, get_tool


def finished(spec: AgentSpec, messages: Sequence[BaseMessage]) -> dict[str, Any] | None:
    """The run's output when the last message is the model's ``final_answer`` (checked as the graph checks
    it, and required to be valid); None while the model is still calling tools."""
    ai = messages[-1]
    assert isinstance(ai, AIMessage)
    calls = [c for c in ai.tool_calls if c["name"] == FINAL_ANSWER]
    if not calls:
        assert ai.tool_calls, "a model finishes with final_answer, not with text"
        return None
    facts = Facts(input=run_input(messages), results=tool_results(messages))
    output, problem = spec.check_answer(dict(calls[0]["args"]), facts)
    assert problem is None, problem
    return output


async def play(
    spec: AgentSpec, store: BusinessStore, payload: dict[str, Any], run_id: str = "run-1"
) -> tuple[dict[str, Any], list[BaseMessage]]:
    """Run the offline playbook in process, calling the tools directly for tenant ``acme`` (every call
    allowed), until its final answer: (the output, the conversation)."""
    messages: list[BaseMessage] = [HumanMessage(json.dumps(payload))]
    for _ in range(spec.max_steps):
        ai = spec.playbook(messages)
        messages.append(ai)
        if (out := finished(spec, messages)) is not None:
            return out, messages
        for tc in ai.tool_calls:
            tool = get_tool(tc["name"])
            assert tool is not None, tc["name"]
            ctx = ToolContext(
                tenant_id="acme",
                caller="test",
                run_id=run_id,
                agent=spec.name,
                idempotency_key=f"{run_id}:{tc['id']}",
                store=store,
            )
            result = await tool.run(tc["args"], ctx)
            messages.append(ToolMessage(json.dumps(result), tool_call_id=tc["id"], name=tc["name"]))
    raise AssertionError("the playbook did not finish")


def calls(messages: Sequence[BaseMessage]) -> list[tuple[str, dict[str, Any]]]:
    """Every tool call the model made, in order, its final answer aside: (name, arguments)."""
    ais = [m for m in messages if isinstance(m, AIMessage)]
    return [
        (str(tc["name"]), dict(tc["args"])) for m in ais for tc in m.tool_calls if tc["name"] != FINAL_ANSWER
    ]
