"""Refunds: a write tool, exactly once per idempotency key."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from tools.business import Order, Refund
from tools.registry import ToolContext, business_tool


class IssueRefundArgs(BaseModel):
    order_id: str = Field(description="Order to refund, e.g. O-5002", min_length=1, max_length=20)
    amount: float = Field(description="Amount to refund in the order's currency", gt=0, le=100_000)
    reason: str = Field(description="Why the refund is due, in one sentence", min_length=3, max_length=500)


class RefundRefused(ValueError):
    """The refund breaks a business rule of the order (not found, or more than what is left to refund)."""


@business_tool(scope="refunds:write", kind="write")
async def issue_refund(args: IssueRefundArgs, ctx: ToolContext) -> dict[str, Any]:
    """Refund part or all of an order to the customer's original payment method.

    The amount cannot exceed what is left of the order total after earlier refunds.
    """

    async def act(session: AsyncSession) -> dict[str, Any]:
        order = await ctx.get(session, Order, args.order_id, for_update=True)
        if order is None:
            return {"refunded": False, "error": f"order {args.order_id} not found"}
        left = round(order.total - await ctx.store.refunded(session, order, ctx.run_id), 2)
        if args.amount > left:
            return {"refunded": False, "error": f"amount {args.amount} exceeds refundable {left}"}
        order.refunded_total = round(order.refunded_total + args.amount, 2)
        refund = Refund(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, ctx.idempotency_key)),
            tenant_id=ctx.tenant_id,
            order_id=order.id,
            amount=args.amount,
            reason=args.reason,
            idempotency_key=ctx.idempotency_key,
        )
        session.add(refund)
        return {"refunded": True, "refund_id": refund.id, "order_id": order.id, "amount": args.amount}

    return await ctx.once("issue_refund", args, act)
