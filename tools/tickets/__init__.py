"""Support-ticket look-ups."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tools.business import Ticket
from tools.registry import ToolContext, business_tool


class GetTicketArgs(BaseModel):
    ticket_id: str = Field(description="Ticket id, e.g. T-1001", min_length=1, max_length=20)


@business_tool(scope="tickets:read", kind="read")
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
