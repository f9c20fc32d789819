"""Insurance policy look-ups."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tools.records import InsurancePolicy
from tools.registry import ToolContext, business_tool


class GetPolicyArgs(BaseModel):
    policy_number: str = Field(description="Policy number, e.g. HO-100201", min_length=1, max_length=20)


@business_tool(scope="policies:read", kind="read")
async def get_policy(args: GetPolicyArgs, ctx: ToolContext) -> dict[str, Any]:
    """Look up an insurance policy by number: holder, line of business, covered loss types, the period it is
    in force (effective_from/effective_to, and terminated_on when it lapsed or was cancelled early), status,
    deductible and limit.

    A policy covers a loss only if the loss date is inside its period (and before terminated_on, if any) and
    the loss type is one of its coverages.
    """
    async with ctx.store.sessions() as session:
        policy = await ctx.get(session, InsurancePolicy, args.policy_number.strip().upper())
        if policy is None:
            return {"found": False, "policy_number": args.policy_number}
        return {
            "found": True,
            "policy_number": policy.id,
            "holder": policy.holder,
            "line": policy.line,
            "coverages": list(policy.coverages),
            "effective_from": policy.effective_from.isoformat(),
            "effective_to": policy.effective_to.isoformat(),
            "terminated_on": policy.terminated_on.isoformat() if policy.terminated_on else None,
            "status": policy.status,
            "deductible": policy.deductible,
            "limit": policy.coverage_limit,
            "currency": policy.currency,
        }
