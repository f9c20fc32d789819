"""The ``support_drafting`` agent's contract, prompt and scripted playbook."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ConfigDict, Field

from agents.playbook import call, last_text, run_input, tool_results
from agents.spec import AgentSpec


class SupportInput(BaseModel):
    """A support ticket to answer."""

    model_config = ConfigDict(extra="forbid")
    ticket_id: str = Field(pattern=r"^T-\d{3,10}$", description="The ticket to answer, e.g. T-1001")


PROMPT = """You draft replies to customer support tickets for a retailer.
Read the ticket with get_ticket and the related order with get_order before you answer.
When the customer asks for a refund that the order supports, propose it with issue_refund (never more than
what is left to refund); a person may approve, change or reject it. If a tool result says an action was
rejected or not taken, say so honestly in the draft. Finish with the reply to the customer, plain text."""


def playbook(messages: Sequence[BaseMessage]) -> AIMessage:
    """What a careful support agent does on the demo data, one step at a time."""
    ticket_id = str(run_input(messages).get("ticket_id", ""))
    results = tool_results(messages)
    if "get_ticket" not in results:
        return call(messages, "get_ticket", {"ticket_id": ticket_id}, "Reading the ticket.")
    ticket = results["get_ticket"][-1][1]
    if not isinstance(ticket, dict) or not ticket.get("found"):
        return AIMessage(content=f"I could not find ticket {ticket_id}; nothing was drafted.")
    order_id = ticket.get("order_id")
    if order_id and "get_order" not in results:
        return call(messages, "get_order", {"order_id": order_id}, "Reading the order.")
    order = results.get("get_order", [("", {})])[-1][1]
    name = (order.get("customer") or {}).get("name", "there") if isinstance(order, dict) else "there"
    wanted = ticket.get("requested_refund")
    if wanted and isinstance(order, dict) and order.get("found") and "issue_refund" not in results:
        left = round(float(order["total"]) - float(order["refunded_total"]), 2)
        amount = round(min(float(wanted), left), 2)
        return call(
            messages,
            "issue_refund",
            {"order_id": order_id, "amount": amount, "reason": f"Ticket {ticket_id}: {ticket['subject']}"},
            f"The customer asks for {wanted}; the order allows {left}. Proposing a refund of {amount}.",
        )
    return AIMessage(content=_draft(ticket, order, name, results.get("issue_refund")))


def _draft(ticket: dict[str, Any], order: Any, name: str, refund: list[tuple[str, Any]] | None) -> str:
    lines = [f"Hello {name},", ""]
    if refund:
        status, result = refund[-1]
        if status == "success" and isinstance(result, dict) and result.get("refunded"):
            lines.append(
                f"We have refunded {result['amount']:.2f} to your original payment method for order "
                f"{result['order_id']}. It should appear within 5 business days."
            )
        else:
            why = result.get("error") if isinstance(result, dict) else str(result)
            lines.append(f"We could not issue the refund you asked for on this ticket. Reason: {why}")
    elif isinstance(order, dict) and order.get("found"):
        when = order.get("delivered_at")
        state = f"was delivered on {when[:10]}" if when else f"is {order['status']} and on its way"
        lines.append(f"Thank you for your message about order {order['order_id']}: it {state}.")
    else:
        lines.append("Thank you for your message; we are looking into it.")
    lines += ["", "Kind regards,", "Customer Support"]
    return "\n".join(lines)


def finish(messages: Sequence[BaseMessage]) -> dict[str, Any]:
    """The run's output: the drafted reply and the actions taken on the way."""
    results = tool_results(messages)
    return {
        "ticket_id": run_input(messages).get("ticket_id"),
        "reply": last_text(messages),
        "tools_used": sorted(results),
    }


SPEC = AgentSpec(
    name="support_drafting",
    description="Drafts a reply to a support ticket from the ticket and order; proposes refunds to approve.",
    input_model=SupportInput,
    example_input={"ticket_id": "T-1001"},
    prompt=PROMPT,
    scopes=frozenset({"tickets:read", "orders:read", "refunds:write", "replies:write"}),
    playbook=playbook,
    finish=finish,
)
