"""Decisions become golden cases: what people decided on real approval requests, as cases the agent must
keep satisfying (an edit is the expected arguments, a rejection means the call must not run, an approval
confirms it), with their provenance and with personal data redacted.

Redaction rule (applied to every string of the case): e-mail addresses become ``[email]``; phone numbers
(7 or more digits, optionally with +, spaces, dots, dashes or brackets) become ``[phone]``; two or more
consecutive capitalised words that are not at a sentence start (a person's name, as free text writes it)
become ``[name]``. Ids such as ``T-1002`` or ``O-5002`` are kept: cases must replay against the same records.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from approvals.repositories import approvals, ledger

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"(?<![\w-])\+?\(?\d[\d ().-]{5,}\d(?![\w-])")
NAME = re.compile(r"(?<=[a-z,;:] )[A-Z][a-z]+(?: [A-Z][a-z]+)+")


def redact(value: Any) -> Any:
    """``value`` with e-mail addresses, phone numbers and names in free text replaced (see the module)."""
    if isinstance(value, str):
        text = EMAIL.sub("[email]", value)
        text = PHONE.sub("[phone]", text)
        return NAME.sub("[name]", text)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


async def decided_cases(
    s: AsyncSession, *, agent: str | None = None, since: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """A golden case (pydantic-evals shape) per decided approval request, oldest first."""
    decided = await approvals.decided_with_runs(
        s, ("approved", "rejected", "responded"), exclude_tool="escalate_to_person", agent=agent, since=since
    )
    cases = []
    for req, run in decided:
        decisions = await approvals.decisions_of(s, [req.id])
        if not decisions:
            continue
        last = decisions[-1]
        event = await ledger.by_id(s, f"{req.id}:approval.decided:{last.id}")
        edit = next((d for d in decisions if d.action == "edit"), None)
        decision: dict[str, Any]
        metadata: dict[str, Any] = {"gated": [req.tool]}
        if req.status == "rejected":
            decision = {"action": "reject", "reason": last.reason}
            metadata["not_executed"] = [req.tool]
            label = "rejected"
        elif req.status == "responded":
            decision = {"action": "respond", "message": last.message}
            metadata["not_executed"] = [req.tool]
            label = "answered"
        elif edit is not None:
            decision = {"action": "edit", "arguments": edit.arguments}
            metadata["executed"] = {req.tool: edit.arguments}
            label = "edited"
        else:
            decision = {"action": "approve"}
            metadata["executed"] = {req.tool: req.arguments}
            label = "approved"
        metadata["provenance"] = {
            "approval_id": req.id,
            "run_id": req.run_id,
            "decided_by": [d.principal_id for d in decisions],
            "decided_at": req.decided_at.isoformat() if req.decided_at else None,
            "ledger_event_hash": event.hash if event is not None else None,
            "rule": req.rule,
            "policy_version": req.policy_version,
        }
        cases.append(
            {
                "name": f"decided-{label}-{req.tool}-{req.id[:8]}",
                "inputs": redact({"input": run.input, "decisions": {req.tool: decision}}),
                "metadata": redact(metadata),
            }
        )
    return cases
