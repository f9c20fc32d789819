"""Where a proposed tool call's arguments came from: what a policy rule reads as ``provenance.<argument>``.

Each argument is traced to the most trusted place its value appears in the run's record:

``input``
    the run's input (what the trigger asked: a system or a person with a key); a string also counts when the
    input's text contains it.
``tenant``
    a field of a tool result that is the tenant's own record (a ticket's ``order_id``, an order's
    ``customer``), other than an echo of the call's own arguments: ``get_order(order_id=X)`` answering
    ``{"order_id": X}`` says nothing about where X came from.
``untrusted``
    only inside text a customer or a third party wrote: the result fields each tool declares ``untrusted``
    (a ticket's ``body``, an e-mail, a claimant's description, a vendor's invoice text), matched as exact
    values or as words inside that text.
``model``
    nowhere in the record: the model wrote it (a computed amount, a reason, a reply).

An argument that is a list or an object is as trusted as its least trusted part. Booleans and nulls carry no
information and are skipped.

Limits, by design of a check that must be cheap and explainable: it matches values, not meaning. A value the
model derived from untrusted text (re-spelt, translated, summed) is ``model``, not ``untrusted``; a value that
happens to appear in the tenant's records as well as in a customer's text counts as ``tenant``; and the check
is only as good as the tools' ``untrusted`` declarations. Rules should therefore treat ``untrusted`` and
``model`` alike where it matters (``provenance.order_id in ["untrusted", "model"]``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from agents.playbook import run_input

RANK = {"input": 0, "tenant": 1, "person": 2, "untrusted": 3, "model": 4}
_MIN_TEXT_MATCH = 3  # shorter strings ("a", "ok") appear in any text by chance


def _leaves(value: Any) -> Iterable[str | float]:
    """The strings and numbers inside a JSON value."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        if value.strip():
            yield value.strip()
    elif isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)


def _split(value: Any, untrusted: frozenset[str]) -> tuple[list[Any], list[Any]]:
    """(the parts of a tool result that are the tenant's records, the parts marked untrusted)."""
    trusted: list[Any] = []
    unsafe: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, item in node.items():
                (unsafe.append(item) if key in untrusted else walk(item))
        elif isinstance(node, list):
            for item in node:
                walk(item)
        else:
            trusted.append(node)

    walk(value)
    return trusted, unsafe


class Record:
    """What the run has seen so far, indexed for tracing argument values."""

    def __init__(self, history: Sequence[BaseMessage], untrusted_fields: Mapping[str, Iterable[str]]) -> None:
        """Index the run's input and every successful tool result of ``history``; ``untrusted_fields`` names,
        per tool, the result keys whose values are text a customer or a third party wrote."""
        given = run_input(history)
        self.input = set(_leaves(given))
        self.input_text = " ".join(v.casefold() for v in self.input if isinstance(v, str))
        self.tenant: set[str | float] = set()
        texts: list[str] = []
        self.untrusted: set[str | float] = set()
        calls: dict[str, tuple[str, Any]] = {}
        for m in history:
            if isinstance(m, AIMessage):
                for c in m.tool_calls:
                    calls[str(c["id"])] = (c["name"], c["args"])
            elif isinstance(m, ToolMessage) and m.status == "success":
                name, args = calls.get(m.tool_call_id, (m.name or "", {}))
                try:
                    content = json.loads(str(m.content))
                except ValueError:
                    content = str(m.content)
                echoes = set(_leaves(args))
                trusted, unsafe = _split(content, frozenset(untrusted_fields.get(name, ())))
                self.tenant |= {v for v in _leaves(trusted) if v not in echoes}
                for v in _leaves(unsafe):
                    self.untrusted.add(v)
                    texts.append(str(v).casefold())
        self.untrusted_text = "\n".join(texts)

    def of_leaf(self, value: str | float) -> str:
        """Where one string or number came from."""
        if value in self.input:
            return "input"
        if isinstance(value, str) and len(value) >= _MIN_TEXT_MATCH and value.casefold() in self.input_text:
            return "input"
        if value in self.tenant:
            return "tenant"
        if value in self.untrusted:
            return "untrusted"
        text = value.casefold() if isinstance(value, str) else _number_text(value)
        if len(text) >= _MIN_TEXT_MATCH and text in self.untrusted_text:
            return "untrusted"
        return "model"

    def of(self, args: Mapping[str, Any]) -> dict[str, str]:
        """Per argument, where its value came from: its least trusted part's origin."""
        out: dict[str, str] = {}
        for name, value in args.items():
            origins = [self.of_leaf(v) for v in _leaves(value)]
            out[str(name)] = max(origins, key=RANK.__getitem__) if origins else "model"
        return out


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)
