"""Customer replies: a write tool, exactly once per idempotency key."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from tools.business import Reply, Ticket
from tools.registry import ToolContext, business_tool


class SendReplyArgs(BaseModel):
    ticket_id: str = Field(description="Ticket to answer, e.g. T-1001", min_length=1, max_length=20)
    body: str = Field(description="The reply the customer will receive", min_length=1, max_length=10_000)


@business_tool(scope="replies:write", kind="write")
async def send_customer_reply(args: SendReplyArgs, ctx: ToolContext) -> dict[str, Any]:
    """Send a reply to the customer on a support ticket and mark the ticket answered."""

    async def act(session: AsyncSession) -> dict[str, Any]:
        ticket = await ctx.get(session, Ticket, args.ticket_id)
        if ticket is None:
            return {"sent": False, "error": f"ticket {args.ticket_id} not found"}
        ticket.status = "answered"
        reply = Reply(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, ctx.idempotency_key)),
            tenant_id=ctx.tenant_id,
            ticket_id=ticket.id,
            body=args.body,
            idempotency_key=ctx.idempotency_key,
        )
        session.add(reply)
        return {"sent": True, "reply_id": reply.id, "ticket_id": ticket.id}

    return await ctx.once("send_customer_reply", args, act)
