"""Shipments: status, scan events, rebooking quotes; rebookings and shipping credits, each exactly once."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from countersign.db import utcnow
from tools.records import (
    RebookingOption,
    Shipment,
    ShipmentEvent,
    ShipmentRebooking,
    ShippingCredit,
    ShippingCustomer,
)
from tools.registry import ToolContext, business_tool


class ShipmentArgs(BaseModel):
    shipment_id: str = Field(description="Shipment id, e.g. SH-3001", min_length=1, max_length=20)


@business_tool(scope="shipments:read", kind="read")
async def get_shipment(args: ShipmentArgs, ctx: ToolContext) -> dict[str, Any]:
    """Look up a shipment: carrier and service, origin, destination, the promised delivery date, status,
    shipping cost, the customer (name, contact, e-mail) and when the customer was last notified about it.
    """
    async with ctx.store.sessions() as session:
        shipment = await ctx.get(session, Shipment, args.shipment_id)
        if shipment is None:
            return {"found": False, "shipment_id": args.shipment_id}
        customer = await ctx.get(session, ShippingCustomer, shipment.customer_id)
        return {
            "found": True,
            "shipment_id": shipment.id,
            "reference": shipment.reference,
            "carrier": shipment.carrier,
            "service": shipment.service,
            "origin": shipment.origin,
            "destination": shipment.destination,
            "shipped_at": shipment.shipped_at.isoformat(),
            "promised_date": shipment.promised_date.isoformat(),
            "status": shipment.status,
            "shipping_cost": shipment.shipping_cost,
            "currency": shipment.currency,
            "last_notified_at": shipment.last_notified_at.isoformat() if shipment.last_notified_at else None,
            "customer": (
                {
                    "id": customer.id,
                    "name": customer.name,
                    "contact": customer.contact,
                    "email": customer.email,
                }
                if customer
                else None
            ),
        }


@business_tool(scope="shipments:read", kind="read")
async def get_shipment_events(args: ShipmentArgs, ctx: ToolContext) -> dict[str, Any]:
    """List a shipment's carrier scan events, oldest first: time, code, location, detail and new_eta.

    Codes: PICKED_UP, DEPARTED, ARRIVED, OUT_FOR_DELIVERY, DELIVERED, ETA_UPDATE, CUSTOMS_CLEARED, REBOOKED,
    and the exceptions DELAY_WEATHER, DELAY_MECHANICAL, MISSED_CONNECTION, CUSTOMS_HOLD, ADDRESS_ISSUE,
    CAPACITY_ROLLOVER. An event with a new_eta replaces the expected delivery date; an exception event without
    one means the delivery date is unknown until a later event gives it.
    """
    async with ctx.store.sessions() as session:
        if await ctx.get(session, Shipment, args.shipment_id) is None:
            return {"found": False, "shipment_id": args.shipment_id, "events": []}
        rows = await session.scalars(
            select(ShipmentEvent)
            .where(ShipmentEvent.tenant_id == ctx.tenant_id, ShipmentEvent.shipment_id == args.shipment_id)
            .order_by(ShipmentEvent.at, ShipmentEvent.id)
        )
        return {
            "found": True,
            "shipment_id": args.shipment_id,
            "events": [
                {
                    "at": e.at.isoformat(),
                    "code": e.code,
                    "location": e.location,
                    "detail": e.detail,
                    "new_eta": e.new_eta.isoformat() if e.new_eta else None,
                }
                for e in rows
            ],
        }


@business_tool(scope="shipments:read", kind="read")
async def get_rebooking_options(args: ShipmentArgs, ctx: ToolContext) -> dict[str, Any]:
    """List the carriers' quotes for moving a shipment onto another service: carrier, service, the
    delivery date it would reach, and the extra cost on top of what was paid. An empty list means no
    alternative exists.
    """
    async with ctx.store.sessions() as session:
        shipment = await ctx.get(session, Shipment, args.shipment_id)
        if shipment is None:
            return {"found": False, "shipment_id": args.shipment_id, "options": []}
        rows = await session.scalars(
            select(RebookingOption)
            .where(
                RebookingOption.tenant_id == ctx.tenant_id, RebookingOption.shipment_id == args.shipment_id
            )
            .order_by(RebookingOption.eta, RebookingOption.extra_cost, RebookingOption.id)
        )
        return {
            "found": True,
            "shipment_id": shipment.id,
            "current_carrier": shipment.carrier,
            "options": [
                {
                    "carrier": o.carrier,
                    "service": o.service,
                    "eta": o.eta.isoformat(),
                    "extra_cost": o.extra_cost,
                }
                for o in rows
            ],
        }


class RebookArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shipment_id: str = Field(description="Shipment to rebook, e.g. SH-3001", min_length=1, max_length=20)
    carrier: str = Field(
        description="Carrier of the quote to take, exactly as get_rebooking_options lists it",
        min_length=1,
        max_length=100,
    )
    extra_cost: float = Field(description="The quote's extra cost, exactly as listed", ge=0, le=100_000)


@business_tool(scope="rebookings:write", kind="write")
async def rebook_shipment(args: RebookArgs, ctx: ToolContext) -> dict[str, Any]:
    """Move an undelivered shipment onto a quoted faster service from get_rebooking_options.

    The extra cost must be the quote's, exactly: the quote, not the request, decides what is paid.
    """

    async def act(session: AsyncSession) -> dict[str, Any]:
        shipment = await ctx.get(session, Shipment, args.shipment_id, for_update=True)
        if shipment is None:
            return {"rebooked": False, "error": f"shipment {args.shipment_id} not found"}
        if shipment.status == "delivered":
            return {"rebooked": False, "error": f"shipment {shipment.id} is already delivered"}
        quotes = list(
            await session.scalars(
                select(RebookingOption).where(
                    RebookingOption.tenant_id == ctx.tenant_id,
                    RebookingOption.shipment_id == shipment.id,
                    RebookingOption.carrier == args.carrier,
                )
            )
        )
        if len(quotes) != 1:
            found = "no quote" if not quotes else "several quotes"
            return {"rebooked": False, "error": f"{found} from {args.carrier} for shipment {shipment.id}"}
        quote = quotes[0]
        if abs(quote.extra_cost - args.extra_cost) > 0.005:
            return {
                "rebooked": False,
                "error": f"the {quote.carrier} quote costs {quote.extra_cost:.2f} extra, "
                f"not {args.extra_cost:.2f}",
            }
        tag = uuid.uuid5(uuid.NAMESPACE_URL, ctx.idempotency_key)
        rebooking = ShipmentRebooking(
            id=str(tag),
            tenant_id=ctx.tenant_id,
            shipment_id=shipment.id,
            from_carrier=shipment.carrier,
            carrier=quote.carrier,
            service=quote.service,
            extra_cost=quote.extra_cost,
            new_eta=quote.eta,
            idempotency_key=ctx.idempotency_key,
        )
        session.add(rebooking)
        session.add(
            ShipmentEvent(
                id=f"EV-{shipment.id[3:]}-RB-{tag.hex[:8]}",
                tenant_id=ctx.tenant_id,
                shipment_id=shipment.id,
                at=utcnow(),
                code="REBOOKED",
                location=shipment.origin,
                detail=f"Rebooked from {shipment.carrier} to {quote.carrier} ({quote.service}).",
                new_eta=quote.eta,
            )
        )
        shipment.carrier, shipment.service, shipment.status = quote.carrier, quote.service, "rebooked"
        return {
            "rebooked": True,
            "rebooking_id": rebooking.id,
            "shipment_id": shipment.id,
            "from_carrier": rebooking.from_carrier,
            "carrier": quote.carrier,
            "service": quote.service,
            "extra_cost": quote.extra_cost,
            "new_eta": quote.eta.isoformat(),
        }

    return await ctx.once("rebook_shipment", args, act)


class CreditArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shipment_id: str = Field(
        description="Shipment the credit is for, e.g. SH-3007", min_length=1, max_length=20
    )
    amount: float = Field(
        description="Credit in the shipment's currency; credits on a shipment never exceed "
        "what the customer paid for shipping",
        gt=0,
        le=100_000,
    )
    reason: str = Field(description="Why the credit is due, in one sentence", min_length=3, max_length=500)


@business_tool(scope="credits:write", kind="write")
async def issue_shipping_credit(args: CreditArgs, ctx: ToolContext) -> dict[str, Any]:
    """Credit the customer's account for a late or failed shipment.

    All credits on one shipment together cannot exceed its shipping cost.
    """

    async def act(session: AsyncSession) -> dict[str, Any]:
        shipment = await ctx.get(session, Shipment, args.shipment_id, for_update=True)
        if shipment is None:
            return {"issued": False, "error": f"shipment {args.shipment_id} not found"}
        earlier = float(
            await session.scalar(
                select(func.coalesce(func.sum(ShippingCredit.amount), 0.0)).where(
                    ShippingCredit.tenant_id == ctx.tenant_id, ShippingCredit.shipment_id == shipment.id
                )
            )
            or 0.0
        )
        left = round(shipment.shipping_cost - earlier, 2)
        if args.amount > left:
            return {
                "issued": False,
                "error": f"amount {args.amount:.2f} exceeds the {left:.2f} of shipping cost not yet credited",
            }
        credit = ShippingCredit(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, ctx.idempotency_key)),
            tenant_id=ctx.tenant_id,
            shipment_id=shipment.id,
            customer_id=shipment.customer_id,
            amount=args.amount,
            reason=args.reason,
            idempotency_key=ctx.idempotency_key,
        )
        session.add(credit)
        return {
            "issued": True,
            "credit_id": credit.id,
            "shipment_id": shipment.id,
            "amount": args.amount,
            "currency": shipment.currency,
        }

    return await ctx.once("issue_shipping_credit", args, act)
