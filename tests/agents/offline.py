"""Driving an agent's offline playbook in process, the way the graph reads its final answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from agents.playbook import run_input, tool_results
from agents.spec import FINAL_ANSWER, AgentSpec, Facts


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
