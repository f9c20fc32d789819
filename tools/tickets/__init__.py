"""Support-ticket look-ups."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tools.business import Ticket
from tools.registry import FactContext, ToolContext, business_tool, policy_fact


class GetTicketArgs(BaseModel):
    ticket_id: str = Field(description="Ticket id, e.g. T-1001", min_length=1, max_length=20)


@business_tool(scope="tickets:read", kind="read", untrusted=("subject", "body"))
async def get_ticket(args: GetTicketArgs, ctx: ToolContext) -> dict[str, Any]:
    """Read a support ticket: subject, the customer's message, the related order and any refund asked for."""
    async with ctx.store.sessions() as session:
        ticket = await ctx.get(session, Ticket, args.ticket_id)
        if ticket is None:
            return {"found": False, "ticket_id": args.ticket_id}
        return {
            "found": True,
            "ticket_id": ticket.id,
            "customer_id": ticket.customer_id,
            "order_id": ticket.order_id,
            "subject": ticket.subject,
            "body": ticket.body,
            "requested_refund": ticket.requested_refund,
            "status": ticket.status,
        }


@policy_fact
async def ticket_customer(ctx: FactContext, ticket_id: str) -> str | None:
    """The id of the customer who opened the ticket, or null when the tenant has no such ticket."""
    ticket = await ctx.get(Ticket, ticket_id)
    return ticket.customer_id if ticket else None
