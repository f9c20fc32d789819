"""Order look-ups."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tools.business import Customer, Order
from tools.registry import FactContext, ToolContext, business_tool, policy_fact


class GetOrderArgs(BaseModel):
    order_id: str = Field(description="Order id, e.g. O-5001", min_length=1, max_length=20)


@business_tool(scope="orders:read", kind="read")
async def get_order(args: GetOrderArgs, ctx: ToolContext) -> dict[str, Any]:
    """Look up an order by id: status, items, total, amount already refunded, delivery date and customer."""
    async with ctx.store.sessions() as session:
        order = await ctx.get(session, Order, args.order_id)
        if order is None:
            return {"found": False, "order_id": args.order_id}
        customer = await ctx.get(session, Customer, order.customer_id)
        return {
            "found": True,
            "order_id": order.id,
            "status": order.status,
            "total": order.total,
            "currency": order.currency,
            "refunded_total": await ctx.store.refunded(session, order, ctx.run_id),
            "items": order.items,
            "placed_at": order.placed_at.isoformat(),
            "delivered_at": order.delivered_at.isoformat() if order.delivered_at else None,
            "customer": {"id": customer.id, "name": customer.name, "tier": customer.tier}
            if customer
            else None,
        }


@policy_fact
async def order_customer(ctx: FactContext, order_id: str) -> str | None:
    """The id of the customer who placed the order, or null when the tenant has no such order."""
    order = await ctx.get(Order, order_id)
    return order.customer_id if order else None


@policy_fact
async def order_total(ctx: FactContext, order_id: str) -> float | None:
    """The order's total (in its currency), or null when the tenant has no such order."""
    order = await ctx.get(Order, order_id)
    return order.total if order else None


@policy_fact
async def customer_email_domain(ctx: FactContext, customer_id: str) -> str | None:
    """The domain of the customer's e-mail address on record (lower case), or null when there is none."""
    customer = await ctx.get(Customer, customer_id)
    if customer is None or "@" not in customer.email:
        return None
    return customer.email.rsplit("@", 1)[1].lower()
