"""The finance systems of record: general-ledger lines, budget lines and vendor invoices, with demo data.

Demo month: cost center CC-410 (IT operations), October 2026. Against budget, software is over by 7,800 (a
vendor invoice for CC-420 was posted to CC-410), cloud hosting is under by 11,500 (October's invoice arrived
and was posted in November: timing), travel is over by 5,350 with nothing on file that explains it, and
training is within tolerance.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from countersign.db import utcnow
from tools.business import BusinessBase, BusinessStore, scoped_fk


class LedgerLine(BusinessBase):
    """A posted general-ledger line: what was booked, where, and from which invoice (if any)."""

    __tablename__ = "ledger_lines"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(20), primary_key=True)  # e.g. GL-41003
    period: Mapped[str] = mapped_column(String(7), index=True)  # YYYY-MM
    cost_center: Mapped[str] = mapped_column(String(20))
    account: Mapped[str] = mapped_column(String(10))
    amount: Mapped[float]
    description: Mapped[str] = mapped_column(Text)
    vendor: Mapped[str | None] = mapped_column(String(120))
    invoice_id: Mapped[str | None] = mapped_column(String(20))
    posted_on: Mapped[dt.date]


class BudgetLine(BusinessBase):
    """The budget of one account of one cost center for one month."""

    __tablename__ = "budget_lines"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(30), primary_key=True)  # e.g. B-2026-10-CC-410-6100
    period: Mapped[str] = mapped_column(String(7), index=True)
    cost_center: Mapped[str] = mapped_column(String(20))
    account: Mapped[str] = mapped_column(String(10))
    account_name: Mapped[str] = mapped_column(String(80))
    amount: Mapped[float]


class VendorInvoice(BusinessBase):
    """A vendor invoice as received: the service period and the cost center it belongs to."""

    __tablename__ = "vendor_invoices"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(20), primary_key=True)  # e.g. INV-88120
    vendor: Mapped[str] = mapped_column(String(120))
    invoice_date: Mapped[dt.date]
    service_period: Mapped[str] = mapped_column(String(7))
    cost_center: Mapped[str] = mapped_column(String(20))
    account: Mapped[str] = mapped_column(String(10))
    amount: Mapped[float]
    description: Mapped[str] = mapped_column(Text)
    posted_period: Mapped[str | None] = mapped_column(String(7))  # when it reached the ledger, if it did


class Reclassification(BusinessBase):
    """A journal reclassification moving (part of) a ledger line to another cost center or account."""

    __tablename__ = "reclassifications"
    __table_args__ = (scoped_fk("ledger_line_id", "ledger_lines"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ledger_line_id: Mapped[str] = mapped_column(String(20))
    from_cost_center: Mapped[str] = mapped_column(String(20))
    to_cost_center: Mapped[str] = mapped_column(String(20))
    from_account: Mapped[str] = mapped_column(String(10))
    to_account: Mapped[str] = mapped_column(String(10))
    amount: Mapped[float]
    reason: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class VarianceFlag(BusinessBase):
    """A variance handed to a controller because nothing on file explains it."""

    __tablename__ = "variance_flags"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    period: Mapped[str] = mapped_column(String(7))
    cost_center: Mapped[str] = mapped_column(String(20))
    account: Mapped[str] = mapped_column(String(10))
    variance: Mapped[float]
    reason: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


ACCOUNTS = {
    "6100": "Software subscriptions",
    "6200": "Cloud hosting",
    "6300": "Travel",
    "6400": "Training",
}

# fmt: off
_BUDGET = [  # (period, cost center, account, amount)
    ("2026-10", "CC-410", "6100", 12_000.0), ("2026-10", "CC-410", "6200", 30_000.0),
    ("2026-10", "CC-410", "6300", 4_000.0), ("2026-10", "CC-410", "6400", 2_000.0),
    ("2026-10", "CC-420", "6100", 9_000.0),
]
_LINES = [  # (id, period, cost center, account, amount, description, vendor, invoice, posted on)
    ("GL-41001", "2026-10", "CC-410", "6100", 11_500.0, "Monitoring suite, October", "Skyline Observability",
     "INV-88101", "2026-10-05"),
    ("GL-41002", "2026-10", "CC-410", "6100", 500.0, "Password manager seats", "KeyVault Co", "INV-88105",
     "2026-10-07"),
    ("GL-41003", "2026-10", "CC-410", "6100", 7_800.0, "Analytics platform licence, Q4",
     "Northwind Analytics", "INV-88120", "2026-10-21"),
    ("GL-41010", "2026-10", "CC-410", "6200", 18_500.0, "Compute reservation, October", "Stratus Cloud",
     "INV-88112", "2026-10-15"),
    ("GL-41020", "2026-10", "CC-410", "6300", 3_900.0, "Team offsite travel", "Atlas Travel", "INV-88130",
     "2026-10-12"),
    ("GL-41021", "2026-10", "CC-410", "6300", 5_450.0, "Card expenses, October batch", None, None,
     "2026-10-31"),
    ("GL-41030", "2026-10", "CC-410", "6400", 2_100.0, "Cloud certification course", "LearnOps", "INV-88140",
     "2026-10-18"),
]
_INVOICES = [  # (id, vendor, date, service period, cost center, account, amount, description, posted period)
    ("INV-88101", "Skyline Observability", "2026-10-01", "2026-10", "CC-410", "6100", 11_500.0,
     "Monitoring suite, October", "2026-10"),
    ("INV-88105", "KeyVault Co", "2026-10-03", "2026-10", "CC-410", "6100", 500.0, "Password manager seats",
     "2026-10"),
    ("INV-88120", "Northwind Analytics", "2026-10-18", "2026-10", "CC-420", "6100", 7_800.0,
     "Analytics platform licence, Q4 - Data Science team (cost center CC-420)", "2026-10"),
    ("INV-88112", "Stratus Cloud", "2026-10-10", "2026-10", "CC-410", "6200", 18_500.0,
     "Compute reservation, October", "2026-10"),
    ("INV-88133", "Stratus Cloud", "2026-11-03", "2026-10", "CC-410", "6200", 11_500.0,
     "Storage and egress, October usage (billed in arrears)", "2026-11"),
    ("INV-88130", "Atlas Travel", "2026-10-10", "2026-10", "CC-410", "6300", 3_900.0, "Team offsite travel",
     "2026-10"),
    ("INV-88140", "LearnOps", "2026-10-16", "2026-10", "CC-410", "6400", 2_100.0,
     "Cloud certification course", "2026-10"),
]
# fmt: on


def _rows() -> list[tuple[type[BusinessBase], list[dict[str, Any]]]]:
    budget = [
        {
            "id": f"B-{p}-{cc}-{acct}",
            "period": p,
            "cost_center": cc,
            "account": acct,
            "account_name": ACCOUNTS[acct],
            "amount": amount,
        }
        for p, cc, acct, amount in _BUDGET
    ]
    lines = [
        {
            "id": i,
            "period": p,
            "cost_center": cc,
            "account": acct,
            "amount": amount,
            "description": text,
            "vendor": vendor,
            "invoice_id": inv,
            "posted_on": dt.date.fromisoformat(on),
        }
        for i, p, cc, acct, amount, text, vendor, inv, on in _LINES
    ]
    invoices = [
        {
            "id": i,
            "vendor": vendor,
            "invoice_date": dt.date.fromisoformat(date),
            "service_period": sp,
            "cost_center": cc,
            "account": acct,
            "amount": amount,
            "description": text,
            "posted_period": posted,
        }
        for i, vendor, date, sp, cc, acct, amount, text, posted in _INVOICES
    ]
    return [(BudgetLine, budget), (LedgerLine, lines), (VendorInvoice, invoices)]


async def seed(store: BusinessStore, tenant_id: str) -> None:
    """Insert the tenant's missing finance demo rows; existing rows (and what agents changed) are kept."""
    await store.insert_missing(tenant_id, _rows())
