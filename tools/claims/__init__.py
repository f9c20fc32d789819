"""Insurance claims: read a first notice of loss; route, flag or reserve a claim, each exactly once."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from countersign.db import utcnow
from tools.records import ClaimReserve, Fnol
from tools.registry import ToolContext, business_tool

Severity = Literal["low", "medium", "high"]
ClaimQueue = Literal["fast_track", "property", "auto_physical_damage", "major_loss", "bodily_injury"]


class GetFnolArgs(BaseModel):
    claim_id: str = Field(
        description="Claim id of the first notice of loss, e.g. FNOL-2001", min_length=1, max_length=20
    )


@business_tool(scope="claims:read", kind="read", untrusted=("description", "attachments"))
async def get_fnol(args: GetFnolArgs, ctx: ToolContext) -> dict[str, Any]:
    """Read a first notice of loss (FNOL): the claimant's own description, the text extracted from each
    attachment (estimates, police or fire reports, medical notes, photos), how and when it was reported, and
    its triage status (new, routed or flagged).
    """
    async with ctx.store.sessions() as session:
        fnol = await ctx.get(session, Fnol, args.claim_id)
        if fnol is None:
            return {"found": False, "claim_id": args.claim_id}
        return {
            "found": True,
            "claim_id": fnol.id,
            "reported_at": fnol.reported_at.isoformat(),
            "channel": fnol.channel,
            "reporter": fnol.reporter,
            "description": fnol.description,
            "attachments": [dict(a) for a in fnol.attachments],
            "status": fnol.status,
            "queue": fnol.queue,
            "severity": fnol.severity,
            "flag_reason": fnol.flag_reason,
        }


class RouteClaimArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    claim_id: str = Field(description="Claim to route, e.g. FNOL-2001", min_length=1, max_length=20)
    queue: ClaimQueue = Field(
        description="Handling queue: fast_track (small, simple), property, "
        "auto_physical_damage, major_loss (large), bodily_injury (any injury)"
    )
    severity: Severity = Field(description="low, medium or high, from the estimated amount and injuries")


@business_tool(scope="claims:write", kind="write")
async def route_claim(args: RouteClaimArgs, ctx: ToolContext) -> dict[str, Any]:
    """Route a new claim to a handling queue with a severity, so an adjuster picks it up.

    A claim flagged for review cannot be routed until a person clears the flag.
    """

    async def act(session: AsyncSession) -> dict[str, Any]:
        fnol = await ctx.get(session, Fnol, args.claim_id, for_update=True)
        if fnol is None:
            return {"routed": False, "error": f"claim {args.claim_id} not found"}
        if fnol.status == "flagged":
            return {
                "routed": False,
                "error": f"claim {fnol.id} is flagged for review ({fnol.flag_reason}); "
                "a person must clear the flag before it is routed",
            }
        fnol.status, fnol.queue, fnol.severity, fnol.triaged_at = (
            "routed",
            args.queue,
            args.severity,
            utcnow(),
        )
        return {"routed": True, "claim_id": fnol.id, "queue": args.queue, "severity": args.severity}

    return await ctx.once("route_claim", args, act)


class FlagClaimArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    claim_id: str = Field(description="Claim to flag, e.g. FNOL-2004", min_length=1, max_length=20)
    reason: str = Field(
        description="Why a person must review the claim before anything else happens, e.g. "
        "'policy not active on the loss date'",
        min_length=3,
        max_length=1000,
    )


@business_tool(scope="claims:write", kind="write")
async def flag_claim(args: FlagClaimArgs, ctx: ToolContext) -> dict[str, Any]:
    """Flag a claim for manual review (coverage doubt, missing or contradictory information) with the reason.

    A flagged claim is not routed and gets no reserve until a person clears the flag.
    """

    async def act(session: AsyncSession) -> dict[str, Any]:
        fnol = await ctx.get(session, Fnol, args.claim_id, for_update=True)
        if fnol is None:
            return {"flagged": False, "error": f"claim {args.claim_id} not found"}
        fnol.status, fnol.flag_reason, fnol.triaged_at = "flagged", args.reason, utcnow()
        return {"flagged": True, "claim_id": fnol.id, "reason": args.reason}

    return await ctx.once("flag_claim", args, act)


class SetReserveArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    claim_id: str = Field(description="Claim to reserve, e.g. FNOL-2001", min_length=1, max_length=20)
    amount: float = Field(
        description="Reserve in the policy's currency: the expected payout (estimate capped "
        "at the policy limit, less the deductible)",
        ge=0,
        le=10_000_000,
    )
    injuries: bool = Field(description="True when anyone may have been injured (any mention, even disputed)")


@business_tool(scope="reserves:write", kind="write")
async def set_claim_reserve(args: SetReserveArgs, ctx: ToolContext) -> dict[str, Any]:
    """Set the reserve (the money put aside for the expected payout) on a routed claim.

    Large reserves and any claim with injuries need a senior adjuster's approval. Flagged or not-yet-routed
    claims cannot be reserved.
    """

    async def act(session: AsyncSession) -> dict[str, Any]:
        fnol = await ctx.get(session, Fnol, args.claim_id, for_update=True)
        if fnol is None:
            return {"reserve_set": False, "error": f"claim {args.claim_id} not found"}
        if fnol.status != "routed":
            return {
                "reserve_set": False,
                "error": f"claim {fnol.id} is {fnol.status}: only routed claims get a reserve",
            }
        fnol.reserve_amount = args.amount
        reserve = ClaimReserve(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, ctx.idempotency_key)),
            tenant_id=ctx.tenant_id,
            claim_id=fnol.id,
            amount=args.amount,
            injuries=args.injuries,
            idempotency_key=ctx.idempotency_key,
        )
        session.add(reserve)
        return {
            "reserve_set": True,
            "reserve_id": reserve.id,
            "claim_id": fnol.id,
            "amount": args.amount,
            "injuries": args.injuries,
        }

    return await ctx.once("set_claim_reserve", args, act)
