"""The ``finance_variance`` agent: month-end budget-vs-actual variances, explained with cited sources.

A controller must explain every variance above a threshold on a cost center. The agent reads the variance
report, the ledger lines behind each material variance and the vendor invoices behind those lines, and
explains each with its cause: an invoice booked to the wrong cost center is a misposting (it proposes a
journal reclassification, which finance approvers review), an invoice for the month that reached the ledger
later is timing, and what nothing explains goes to a controller. The offline playbook is in ``offline.py``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.spec import AgentSpec, Facts

THRESHOLD_ABS = 1_000.0
THRESHOLD_PCT = 10.0
Cause = Literal["misposting", "timing", "unexplained"]


class VarianceInput(BaseModel):
    """A month and a cost center to explain."""

    model_config = ConfigDict(extra="forbid")
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="Month, YYYY-MM, e.g. 2026-10")
    cost_center: str = Field(pattern=r"^CC-\d{3,6}$", description="Cost center, e.g. CC-410")


PROMPT = f"""You explain month-end budget-vs-actual variances for a finance controller.
1. Read the variance report for the month and cost center with get_variance_report.
2. A variance is material when it is at least {THRESHOLD_ABS:,.0f} and at least {THRESHOLD_PCT:.0f}% of
   budget. For each material variance, read its ledger lines with get_ledger_lines; read the vendor invoice
   behind each line with get_vendor_invoice; for an account under budget, list the month's invoices with
   list_vendor_invoices (an invoice posted in a later month is a timing difference).
3. Explain each material variance with its cause, citing the ledger line ids (GL-...) and invoice ids
   (INV-...) you read. Never cite a line or invoice you did not read.
4. An invoice booked to another cost center than the one it names is a misposting: propose a reclassification
   of that ledger line with propose_reclassification (finance approves it). If nothing you read explains a
   variance, hand it to a controller with flag_variance, saying what you checked.
Finish by calling final_answer: each material variance with its cause, explanation and sources, and a short
summary for the controller."""


class VarianceExplanation(BaseModel):
    """One material variance, explained."""

    account: str
    account_name: str
    budget: float
    actual: float
    variance: float
    cause: Cause
    explanation: str = Field(min_length=1)
    sources: list[str] = Field(description="ledger line and invoice ids the explanation rests on")
    action: str | None


class VarianceOutput(BaseModel):
    """What a finished variance run must return: every cited source is one the run read."""

    period: str
    cost_center: str
    variances: list[VarianceExplanation]
    escalated: bool
    summary: str = Field(min_length=1)
    unread_sources: list[str] = Field(max_length=0, description="cited ids the run never read")
    tools_used: list[str]


def sources_read(facts: Facts) -> set[str]:
    """The ledger line and invoice ids the run read (from the tools' results)."""
    read: set[str] = set()
    for status, content in facts.results.get("get_ledger_lines", []):
        if status == "success" and isinstance(content, dict):
            read |= {str(line["line_id"]) for line in content.get("lines", [])}
    for name in ("get_vendor_invoice", "list_vendor_invoices"):
        for status, content in facts.results.get(name, []):
            if status == "success" and isinstance(content, dict):
                found = content.get("invoices", [content] if content.get("found") else [])
                read |= {str(inv["invoice_id"]) for inv in found}
    return read


def derive(answer: dict[str, Any], facts: Facts) -> dict[str, Any]:
    """What the record says of the answer: the sources it cites that the run never read."""
    cited = {
        str(s) for v in answer.get("variances") or [] if isinstance(v, dict) for s in v.get("sources") or []
    }
    return {"unread_sources": sorted(cited - sources_read(facts))}


SPEC = AgentSpec(
    name="finance_variance",
    description=(
        "Explains a cost center's month-end budget-vs-actual variances from ledger lines and vendor "
        "invoices, citing its sources; proposes journal reclassifications for mispostings (finance approves) "
        "and hands unexplained variances to a controller."
    ),
    input_model=VarianceInput,
    example_input={"period": "2026-10", "cost_center": "CC-410"},
    prompt=PROMPT,
    scopes=frozenset({"budget:read", "ledger:read", "invoices:read", "journal:write", "variance:write"}),
    output_model=VarianceOutput,
    offline="agents.finance_variance.offline:playbook",
    derive=derive,
    derived_fields=("tools_used", "unread_sources"),
    max_steps=10,
    tags=("finance",),
    owner={"team": "Finance operations", "role": "approver:finance"},
)
