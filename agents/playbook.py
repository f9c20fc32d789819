"""Helpers for writing playbooks (the offline model's scripts) and for reading a conversation's record: the
run's input and the tools' results, the same way every time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from agents.spec import FINAL_ANSWER


def run_input(messages: Sequence[BaseMessage]) -> dict[str, Any]:
    """The run's input: the first human message carries it as JSON."""
    for m in messages:
        if isinstance(m, HumanMessage):
            try:
                value = json.loads(str(m.content))
            except ValueError:
                return {"text": str(m.content)}
            return value if isinstance(value, dict) else {"value": value}
    return {}


def tool_results(messages: Sequence[BaseMessage]) -> dict[str, list[tuple[str, Any]]]:
    """Every tool result so far, by tool name: (status, parsed content) in order."""
    names: dict[str, str] = {}
    for m in messages:
        if isinstance(m, AIMessage):
            for call in m.tool_calls:
                names[str(call["id"])] = call["name"]
    out: dict[str, list[tuple[str, Any]]] = {}
    for m in messages:
        if isinstance(m, ToolMessage):
            name = m.name or names.get(m.tool_call_id, "?")
            try:
                content: Any = json.loads(str(m.content))
            except ValueError:
                content = str(m.content)
            out.setdefault(name, []).append((m.status, content))
    return out


def call(messages: Sequence[BaseMessage], name: str, args: dict[str, Any], say: str = "") -> AIMessage:
    """An AI message calling one tool, with an id that depends only on the conversation's length."""
    turn = sum(1 for m in messages if isinstance(m, AIMessage))
    return AIMessage(content=say, tool_calls=[{"name": name, "args": args, "id": f"call_{turn}_{name}"}])


def last_text(messages: Sequence[BaseMessage]) -> str:
    """The content of the final AI message."""
    for m in reversed(messages):
        if isinstance(m, AIMessage):
            return str(m.content)
    return ""


def final_answer(messages: Sequence[BaseMessage], answer: dict[str, Any]) -> AIMessage:
    """The message that ends a run: one ``final_answer`` call whose arguments are the answer."""
    return call(messages, FINAL_ANSWER, answer)


def answering(
    steps: Callable[[Sequence[BaseMessage]], AIMessage],
    finish: Callable[[Sequence[BaseMessage]], dict[str, Any]],
    derived: Iterable[str],
) -> Callable[[Sequence[BaseMessage]], AIMessage]:
    """A playbook that speaks the protocol: ``steps`` decides the tool calls; when it writes its closing text
    instead, the answer is ``finish`` of the conversation with that text, less the fields the workflow derives
    from the record itself, sent as a ``final_answer`` call."""
    skip = frozenset(derived)

    def play(messages: Sequence[BaseMessage]) -> AIMessage:
        ai = steps(messages)
        if ai.tool_calls:
            return ai
        answer = {k: v for k, v in finish([*messages, ai]).items() if k not in skip}
        return final_answer(messages, answer)

    return play
