"""Finance: budget-vs-actual by account, the ledger lines and vendor invoices behind it; journal
reclassifications and variance flags, each exactly once."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tools.finance.records import (
    ACCOUNTS,
    BudgetLine,
    LedgerLine,
    Reclassification,
    VarianceFlag,
    VendorInvoice,
)
from tools.finance.records import seed as seed
from tools.registry import ToolContext, business_tool

PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"
COST_CENTER = r"^CC-\d{3,6}$"
ACCOUNT = r"^\d{4}$"


class PeriodArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: str = Field(description="Month, YYYY-MM, e.g. 2026-10", pattern=PERIOD)
    cost_center: str = Field(description="Cost center, e.g. CC-410", pattern=COST_CENTER)


@business_tool(scope="budget:read", kind="read")
async def get_variance_report(args: PeriodArgs, ctx: ToolContext) -> dict[str, Any]:
    """Budget against actual for every account of a cost center in one month: budget, actual (posted ledger
    lines), variance (actual minus budget; positive means over budget) and variance as a percent of budget.
    """
    async with ctx.store.sessions() as session:
        budgets = list(
            await session.scalars(
                select(BudgetLine).where(
                    BudgetLine.tenant_id == ctx.tenant_id,
                    BudgetLine.period == args.period,
                    BudgetLine.cost_center == args.cost_center,
                )
            )
        )
        actuals = {
            account: float(total or 0.0)
            for account, total in (
                await session.execute(
                    select(LedgerLine.account, func.sum(LedgerLine.amount))
                    .where(
                        LedgerLine.tenant_id == ctx.tenant_id,
                        LedgerLine.period == args.period,
                        LedgerLine.cost_center == args.cost_center,
                    )
                    .group_by(LedgerLine.account)
                )
            ).tuples()
        }
    accounts = sorted({b.account for b in budgets} | set(actuals))
    budget_of = {b.account: b.amount for b in budgets}
    rows = []
    for account in accounts:
        budget, actual = budget_of.get(account, 0.0), round(float(actuals.get(account) or 0.0), 2)
        variance = round(actual - budget, 2)
        rows.append(
            {
                "account": account,
                "account_name": ACCOUNTS.get(account, account),
                "budget": budget,
                "actual": actual,
                "variance": variance,
                "variance_pct": round(100 * variance / budget, 1) if budget else None,
            }
        )
    return {"found": bool(rows), "period": args.period, "cost_center": args.cost_center, "accounts": rows}


class LedgerArgs(PeriodArgs):
    account: str = Field(description="Account number, e.g. 6100", pattern=ACCOUNT)


@business_tool(scope="ledger:read", kind="read")
async def get_ledger_lines(args: LedgerArgs, ctx: ToolContext) -> dict[str, Any]:
    """The ledger lines posted to one account of a cost center in one month: line id, amount, description,
    vendor and the vendor invoice it came from (none for card expenses and manual journals)."""
    async with ctx.store.sessions() as session:
        lines = await session.scalars(
            select(LedgerLine)
            .where(
                LedgerLine.tenant_id == ctx.tenant_id,
                LedgerLine.period == args.period,
                LedgerLine.cost_center == args.cost_center,
                LedgerLine.account == args.account,
            )
            .order_by(LedgerLine.posted_on, LedgerLine.id)
        )
        return {
            "period": args.period,
            "cost_center": args.cost_center,
            "account": args.account,
            "lines": [
                {
                    "line_id": ln.id,
                    "amount": ln.amount,
                    "description": ln.description,
                    "vendor": ln.vendor,
                    "invoice_id": ln.invoice_id,
                    "posted_on": ln.posted_on.isoformat(),
                }
                for ln in lines
            ],
        }


class InvoiceArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cost_center: str = Field(description="Cost center the invoices are for, e.g. CC-410", pattern=COST_CENTER)
    service_period: str = Field(description="Month the service was delivered, YYYY-MM", pattern=PERIOD)
    account: str = Field(description="Account number, e.g. 6200", pattern=ACCOUNT)


@business_tool(scope="invoices:read", kind="read", untrusted=("description",))
async def list_vendor_invoices(args: InvoiceArgs, ctx: ToolContext) -> dict[str, Any]:
    """Vendor invoices for services delivered to a cost center in a month, on one account, whenever they
    were received: vendor, invoice date, amount, description and the month they reached the ledger
    (posted_period; null when not yet posted). An invoice posted in a later month than its service period
    is a timing difference."""
    async with ctx.store.sessions() as session:
        rows = await session.scalars(
            select(VendorInvoice)
            .where(
                VendorInvoice.tenant_id == ctx.tenant_id,
                VendorInvoice.cost_center == args.cost_center,
                VendorInvoice.service_period == args.service_period,
                VendorInvoice.account == args.account,
            )
            .order_by(VendorInvoice.invoice_date, VendorInvoice.id)
        )
        return {"invoices": [_invoice(i) for i in rows]}


class InvoiceIdArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    invoice_id: str = Field(description="Invoice id, e.g. INV-88120", pattern=r"^INV-\d{3,10}$")


@business_tool(scope="invoices:read", kind="read", untrusted=("description",))
async def get_vendor_invoice(args: InvoiceIdArgs, ctx: ToolContext) -> dict[str, Any]:
    """One vendor invoice by id: vendor, date, service period, the cost center and account it is for, amount
    and description (which may name the team or cost center that ordered it)."""
    async with ctx.store.sessions() as session:
        invoice = await ctx.get(session, VendorInvoice, args.invoice_id)
        if invoice is None:
            return {"found": False, "invoice_id": args.invoice_id}
        return {"found": True, **_invoice(invoice)}


def _invoice(i: VendorInvoice) -> dict[str, Any]:
    return {
        "invoice_id": i.id,
        "vendor": i.vendor,
        "invoice_date": i.invoice_date.isoformat(),
        "service_period": i.service_period,
        "cost_center": i.cost_center,
        "account": i.account,
        "amount": i.amount,
        "description": i.description,
        "posted_period": i.posted_period,
    }


class ReclassArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ledger_line_id: str = Field(
        description="The ledger line to move, e.g. GL-41003", pattern=r"^GL-\d{3,10}$"
    )
    to_cost_center: str = Field(description="Cost center the amount belongs to", pattern=COST_CENTER)
    to_account: str = Field(description="Account the amount belongs to", pattern=ACCOUNT)
    amount: float = Field(description="Amount to move (at most the line's amount)", gt=0, le=10_000_000)
    reason: str = Field(
        description="Why, citing the source document, in one sentence", min_length=3, max_length=500
    )


@business_tool(scope="journal:write", kind="write")
async def propose_reclassification(args: ReclassArgs, ctx: ToolContext) -> dict[str, Any]:
    """Post a journal reclassification moving (part of) a ledger line to the cost center and account it
    belongs to, e.g. an invoice posted to the wrong cost center. Finance approvers review every one; large
    ones need two of them.
    """

    async def act(session: AsyncSession) -> dict[str, Any]:
        line = await ctx.get(session, LedgerLine, args.ledger_line_id, for_update=True)
        if line is None:
            return {"posted": False, "error": f"ledger line {args.ledger_line_id} not found"}
        moved = await session.scalar(
            select(func.coalesce(func.sum(Reclassification.amount), 0.0)).where(
                Reclassification.tenant_id == ctx.tenant_id, Reclassification.ledger_line_id == line.id
            )
        )
        left = round(line.amount - float(moved or 0.0), 2)
        if args.amount > left:
            return {
                "posted": False,
                "error": f"amount {args.amount:.2f} exceeds the {left:.2f} left on {line.id}",
            }
        if (args.to_cost_center, args.to_account) == (line.cost_center, line.account):
            return {"posted": False, "error": f"{line.id} is already on {line.cost_center} / {line.account}"}
        row = Reclassification(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, ctx.idempotency_key)),
            tenant_id=ctx.tenant_id,
            ledger_line_id=line.id,
            from_cost_center=line.cost_center,
            to_cost_center=args.to_cost_center,
            from_account=line.account,
            to_account=args.to_account,
            amount=args.amount,
            reason=args.reason,
            idempotency_key=ctx.idempotency_key,
        )
        session.add(row)
        return {
            "posted": True,
            "reclassification_id": row.id,
            "ledger_line_id": line.id,
            "from": f"{line.cost_center}/{line.account}",
            "to": f"{args.to_cost_center}/{args.to_account}",
            "amount": args.amount,
        }

    return await ctx.once("propose_reclassification", args, act)


class FlagArgs(PeriodArgs):
    account: str = Field(description="Account number, e.g. 6300", pattern=ACCOUNT)
    variance: float = Field(description="The variance to explain (actual minus budget)")
    reason: str = Field(
        description="What was checked and why it does not explain the variance", min_length=3, max_length=1000
    )


@business_tool(scope="variance:write", kind="write")
async def flag_variance(args: FlagArgs, ctx: ToolContext) -> dict[str, Any]:
    """Hand a variance that nothing on file explains to a finance controller, with what was checked."""

    async def act(session: AsyncSession) -> dict[str, Any]:
        row = VarianceFlag(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, ctx.idempotency_key)),
            tenant_id=ctx.tenant_id,
            period=args.period,
            cost_center=args.cost_center,
            account=args.account,
            variance=args.variance,
            reason=args.reason,
            idempotency_key=ctx.idempotency_key,
        )
        session.add(row)
        return {"flagged": True, "flag_id": row.id, "account": args.account, "variance": args.variance}

    return await ctx.once("flag_variance", args, act)
