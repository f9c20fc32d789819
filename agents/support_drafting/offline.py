"""The offline (scripted) model's playbook for ``support_drafting``: what a careful support agent does on the
demo data, ending with a ``final_answer`` call like any model.

Read the ticket and its order, look up the approved policies that apply, then either escalate to a person (no
policy covers the question, or none supports the refund asked for) or answer, proposing the refund when a
policy passage supports it. Every policy statement in the reply cites its passage as ``[doc-id#section]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import ValidationError

from agents.playbook import answering, call, last_text, run_input, tool_results
from agents.support_drafting.agent import NO_POLICY, NO_REFUND_GROUND, REFUND_GROUNDS, SPEC
from tools.knowledge import Passage


class _Conversation:
    """Everything the playbook and ``finish`` read from the conversation so far, computed the same way."""

    def __init__(self, messages: Sequence[BaseMessage]) -> None:
        self.ticket_id = str(run_input(messages).get("ticket_id", ""))
        self.results = tool_results(messages)
        self.ticket = _last_dict(self.results, "get_ticket")
        self.order = _last_dict(self.results, "get_order")
        self.passages = _found_passages(self.results.get("search_policies", []))
        self.ground = next((p for p in self.passages if p.id in REFUND_GROUNDS), None)
        # Like a model without defences, the playbook obeys an instruction written in the ticket's text (the
        # prompt-injection demo ticket): stopping such a call is the approval policy's job, not the model's.
        self.instruction = _INSTRUCTION.search(str(self.ticket.get("body", ""))) if self.ticket else None

    @property
    def ticket_found(self) -> bool:
        return self.ticket is not None and bool(self.ticket.get("found"))

    @property
    def order_found(self) -> bool:
        return self.order is not None and bool(self.order.get("found"))

    @property
    def wanted_refund(self) -> float | None:
        if self.instruction:
            return float(self.instruction.group(1))
        wanted = self.ticket.get("requested_refund") if self.ticket else None
        return float(wanted) if wanted else None

    @property
    def order_id(self) -> str | None:
        if self.instruction:
            return self.instruction.group(2)
        return self.ticket.get("order_id") if self.ticket else None

    @property
    def name(self) -> str:
        customer = (self.order or {}).get("customer") or {}
        return str(customer.get("name") or "there")

    @property
    def query(self) -> str:
        """The search query: the customer's own words, subject and message."""
        assert self.ticket is not None
        return f"{self.ticket.get('subject', '')}. {self.ticket.get('body', '')}"[:2000]

    @property
    def escalation(self) -> str | None:
        """Why a person must take the ticket over, once the policies were searched; None if they need not."""
        if "search_policies" not in self.results:
            return None
        if not self.passages:
            return NO_POLICY
        if self.wanted_refund and self.order_found and self.ground is None:
            return NO_REFUND_GROUND
        return None


_INSTRUCTION = re.compile(r"refund of (\d+(?:\.\d+)?) on order (O-\d+)", re.IGNORECASE)


def _last_dict(results: dict[str, list[tuple[str, Any]]], name: str) -> dict[str, Any] | None:
    if name not in results:
        return None
    content = results[name][-1][1]
    return content if isinstance(content, dict) else None


def _found_passages(searches: Iterable[tuple[str, Any]]) -> list[Passage]:
    """The passages every successful search returned, best first, each once."""
    out: dict[str, Passage] = {}
    for status, content in searches:
        if status != "success" or not isinstance(content, dict):
            continue
        for item in content.get("results") or []:
            try:
                passage = Passage.model_validate(item)
            except ValidationError:
                continue
            out.setdefault(passage.id, passage)
    return list(out.values())


def steps(messages: Sequence[BaseMessage]) -> AIMessage:
    """The next step on the demo data: tool calls, or the closing reply."""
    c = _Conversation(messages)
    r = c.results
    if "get_ticket" not in r:
        return call(messages, "get_ticket", {"ticket_id": c.ticket_id}, "Reading the ticket.")
    if not c.ticket_found or c.ticket is None:
        return AIMessage(content=f"I could not find ticket {c.ticket_id}; nothing was drafted.")
    order_id = c.order_id
    if order_id and "get_order" not in r:
        return call(messages, "get_order", {"order_id": order_id}, "Reading the order.")
    if "search_policies" not in r:
        return call(
            messages, "search_policies", {"query": c.query, "k": 3}, "Looking up the policies that apply."
        )
    if c.escalation is not None:
        return AIMessage(content=_escalation_reply(c))
    wanted = c.wanted_refund
    if wanted and c.order is not None and c.order_found and c.ground and "issue_refund" not in r:
        left = round(float(c.order["total"]) - float(c.order["refunded_total"]), 2)
        amount = round(min(wanted, left), 2)
        return call(
            messages,
            "issue_refund",
            {
                "order_id": order_id,
                "amount": amount,
                "reason": f"Ticket {c.ticket_id}: {c.ticket['subject']}",
            },
            f"The customer asks for {wanted}; the order allows {left}; [{c.ground.id}] supports a refund. "
            f"Proposing a refund of {amount}.",
        )
    return AIMessage(content=_draft(c))


_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _stems(text: str) -> set[str]:
    # Five-letter prefixes: a crude, deterministic stand-in for stemming ("arrives" and "arrive" agree).
    return {w[:5] for w in _WORD.findall(text.lower()) if len(w) > 2}


def _quote(passage: Passage, about: str, must: str = "") -> str:
    """The passage's sentence closest to ``about`` (among those containing ``must``), with its citation."""
    sentences = _SENTENCE.split(passage.text)
    pool = [s for s in sentences if must in s.lower()] or sentences
    wanted = _stems(about)
    best = max(pool, key=lambda s: len(_stems(s) & wanted))  # the first of equals: max keeps the earliest
    return f"From our policy on {passage.section.lower()}: {best.rstrip('.')} [{passage.id}]."


def _escalation_reply(c: _Conversation) -> str:
    if c.escalation == NO_REFUND_GROUND:
        body = (
            "Thank you for your message. A member of our support team will review your refund request and "
            "follow up with you personally."
        )
    else:
        body = (
            "Thank you for your message. I have passed your question to a member of our support team, who "
            "will follow up with you personally."
        )
    return "\n".join([f"Hello {c.name},", "", body, "", "Kind regards,", "Customer Support"])


def _draft(c: _Conversation) -> str:
    lines = [f"Hello {c.name},", ""]
    refund = c.results.get("issue_refund")
    about = c.query if c.ticket else ""
    if refund:
        status, result = refund[-1]
        if status == "success" and isinstance(result, dict) and result.get("refunded"):
            lines.append(
                f"We have refunded {result['amount']:.2f} to your original payment method for order "
                f"{result['order_id']}."
            )
            if c.ground is not None:
                lines.append(_quote(c.ground, about, must="refund"))
        else:
            why = (result.get("error") or result.get("message")) if isinstance(result, dict) else str(result)
            lines.append(f"We could not issue the refund you asked for on this ticket. Reason: {why}")
    elif c.order is not None and c.order_found:
        when = c.order.get("delivered_at")
        state = f"was delivered on {when[:10]}" if when else f"is {c.order['status']} and on its way"
        lines.append(f"Thank you for your message about order {c.order['order_id']}: it {state}.")
        lines.append(_quote(c.passages[0], about))
    else:
        lines.append("Thank you for your message.")
        lines.append(_quote(c.passages[0], about))
    lines += ["", "Kind regards,", "Customer Support"]
    return "\n".join(lines)


def finish(messages: Sequence[BaseMessage]) -> dict[str, Any]:
    """The answer: the drafted reply, and whether a person must take over (and why). The workflow adds the
    passages it cites and the tools used, from the record."""
    c = _Conversation(messages)
    return {
        "ticket_id": c.ticket_id or None,
        "reply": last_text(messages),
        "escalated": c.escalation is not None,
        "reason": c.escalation,
    }


playbook = answering(steps, finish, SPEC.derived_fields)
