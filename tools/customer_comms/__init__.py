"""Customer communications about shipments: read the customer's e-mails, send a notification once."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from countersign.db import utcnow
from tools.records import CustomerEmail, CustomerNotification, Shipment, ShippingCustomer
from tools.registry import ToolContext, business_tool


class GetEmailsArgs(BaseModel):
    shipment_id: str = Field(
        description="Shipment the e-mails are about, e.g. SH-3001", min_length=1, max_length=20
    )


@business_tool(scope="emails:read", kind="read", untrusted=("from", "subject", "body"))
async def get_customer_emails(args: GetEmailsArgs, ctx: ToolContext) -> dict[str, Any]:
    """Read the customer's e-mails about a shipment, oldest first: sender, time, subject and body. They tell
    what the delay means for the customer (deadlines, perishable goods, requests)."""
    async with ctx.store.sessions() as session:
        rows = await session.scalars(
            select(CustomerEmail)
            .where(CustomerEmail.tenant_id == ctx.tenant_id, CustomerEmail.shipment_id == args.shipment_id)
            .order_by(CustomerEmail.received_at, CustomerEmail.id)
        )
        return {
            "shipment_id": args.shipment_id,
            "emails": [
                {
                    "from": m.sender,
                    "received_at": m.received_at.isoformat(),
                    "subject": m.subject,
                    "body": m.body,
                }
                for m in rows
            ],
        }


class NotifyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shipment_id: str = Field(
        description="Shipment the message is about, e.g. SH-3001", min_length=1, max_length=20
    )
    message: str = Field(
        description="The e-mail the customer will receive, plain text, signed by the team",
        min_length=1,
        max_length=5000,
    )


@business_tool(scope="notifications:write", kind="write")
async def notify_customer(args: NotifyArgs, ctx: ToolContext) -> dict[str, Any]:
    """E-mail the shipment's customer (at the address on file) about an exception on their shipment.

    A person reads every message before it is sent and may change it.
    """

    async def act(session: AsyncSession) -> dict[str, Any]:
        shipment = await ctx.get(session, Shipment, args.shipment_id, for_update=True)
        if shipment is None:
            return {"sent": False, "error": f"shipment {args.shipment_id} not found"}
        customer = await ctx.get(session, ShippingCustomer, shipment.customer_id)
        if customer is None:
            return {"sent": False, "error": f"shipment {shipment.id} has no customer on file"}
        notification = CustomerNotification(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, ctx.idempotency_key)),
            tenant_id=ctx.tenant_id,
            shipment_id=shipment.id,
            to_email=customer.email,
            body=args.message,
            idempotency_key=ctx.idempotency_key,
        )
        session.add(notification)
        shipment.last_notified_at = utcnow()
        return {
            "sent": True,
            "notification_id": notification.id,
            "shipment_id": shipment.id,
            "to": customer.email,
            "message": args.message,
        }

    return await ctx.once("notify_customer", args, act)
