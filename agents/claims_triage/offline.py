"""The offline (scripted) model's playbook for ``claims_triage``: what a careful claims handler does on the
demo data, ending with a ``final_answer`` call like any model.

It reads the FNOL, extracts the claim's facts with fixed rules (``extract_claim``), looks up the policy, and
either flags the claim for a person (missing facts, policy not in force on the loss date, loss type not
covered) or routes it with a severity and sets its reserve. It never guesses a missing fact: a claim
without an amount is flagged.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, Field

from agents.claims_triage.agent import SPEC
from agents.playbook import answering, call, last_text, run_input, tool_results
from tools.claims import ClaimQueue, Severity

LossType = Literal["water_damage", "flood", "fire", "theft", "storm", "vandalism", "collision", "glass"]

HIGH_AMOUNT = 25_000.0  # estimates from here on are high severity
MEDIUM_AMOUNT = 5_000.0  # estimates from here on are medium severity
DISCREPANCY = 0.10  # a stated amount more than 10% away from the documented estimate is noted


class ExtractedClaim(BaseModel):
    """The facts of a claim as read from the FNOL text and its attachments; ``None`` means not stated."""

    policy_number: str | None = None
    loss_date: dt.date | None = None
    loss_type: LossType | None = None
    estimated_amount: float | None = None
    amount_source: str | None = Field(
        default=None, description="Where the amount was read: a file or the text"
    )
    injuries: bool = False
    notes: list[str] = Field(
        default_factory=list, description="Contradictions and other things a person should see"
    )


class Triage(BaseModel):
    """What to do with a claim: flag it (with the reasons) or route it with a severity, queue and reserve."""

    flag_reasons: list[str] = Field(default_factory=list)
    severity: Severity | None = None
    queue: ClaimQueue | None = None
    reserve: float | None = None
    reserve_basis: str | None = None


# --- Extraction: fixed rules, so the same FNOL always gives the same claim ---------------------------------

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}
_MONTH = (
    r"(Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DATE = re.compile(
    rf"\b(?:(\d{{4}})-(\d{{2}})-(\d{{2}})|{_MONTH}\s+(\d{{1,2}}),?\s+(\d{{4}})|(\d{{1,2}})\s+{_MONTH}\s+(\d{{4}}))\b",
    re.IGNORECASE,
)
_LABELLED_DATE = re.compile(r"(?:date of loss|loss date|incident date)\s*:?\s*", re.IGNORECASE)
_POLICY = re.compile(r"\b(HO|AU|CP)[-\s]?(\d{6})\b")
_MONEY = re.compile(r"(?:\$|\bUSD\s?)\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?\s?([kK]\b)?")
_TOTAL = re.compile(r"\btotal(?: estimate)?\s*:?\s*(?=\$|USD)", re.IGNORECASE)
_NOT_AN_ESTIMATE = re.compile(r"deductible|premium|limit", re.IGNORECASE)
_ESTIMATE_KINDS = {"estimate", "invoice"}
# Tried in this order, the first match wins: a river flood also "overflowed", a break-in also smashes glass.
_LOSS_TYPES: tuple[tuple[LossType, re.Pattern[str]], ...] = (
    ("flood", re.compile(r"\b(?:river|creek|rising water|flash flood|storm surge|floodwater)\b", re.I)),
    ("fire", re.compile(r"\b(?:fire|smoke|burnt|burned)\b", re.I)),
    ("theft", re.compile(r"\b(?:stole\w*|theft|burglar\w*|break-in|broke(?:n)? into)\b", re.I)),
    ("vandalism", re.compile(r"\b(?:vandal\w*|graffiti)\b", re.I)),
    ("glass", re.compile(r"\b(?:windshield|windscreen)\b", re.I)),
    (
        "collision",
        re.compile(r"\b(?:collision|collided|rear-ended|crash\w*|reversed into|hit (?:a|an|the))\b", re.I),
    ),
    (
        "water_damage",
        re.compile(r"\b(?:pipe|leak\w*|hose|burst|overflow\w*|water heater|water damage|flooded)\b", re.I),
    ),
    ("storm", re.compile(r"\b(?:storm\w*|hail\w*|tornado|windstorm|fell)\b", re.I)),
)
_NO_INJURY = re.compile(
    r"\b(?:no injur\w*|injuries:\s*none|(?:nobody|no one)(?: was)? (?:hurt|injured)|not (?:hurt|injured)|"
    r"uninjured|without injur\w*)",
    re.IGNORECASE,
)
_INJURY = re.compile(
    r"\b(?:injur\w*|hurt|whiplash|hospital\w*|ambulance|urgent care|paramedic\w*|fractur\w*|concussion|pain|"
    r"treated for|bleeding)\b",
    re.IGNORECASE,
)


def _date(m: re.Match[str]) -> dt.date | None:
    g = m.groups()
    try:
        if g[0]:
            return dt.date(int(g[0]), int(g[1]), int(g[2]))
        if g[3]:
            return dt.date(int(g[5]), _MONTHS[g[3][:3].lower()], int(g[4]))
        return dt.date(int(g[8]), _MONTHS[g[7][:3].lower()], int(g[6]))
    except ValueError:
        return None


def _labelled_date(text: str) -> dt.date | None:
    for label in _LABELLED_DATE.finditer(text):
        m = _DATE.match(text, label.end())
        if m and (d := _date(m)):
            return d
    return None


def _first_date(text: str) -> dt.date | None:
    return next((d for m in _DATE.finditer(text) if (d := _date(m))), None)


def _amount(m: re.Match[str]) -> float:
    whole, cents, thousands = m.group(1).replace(",", ""), m.group(2), m.group(3)
    value = float(f"{whole}.{cents}" if cents else whole)
    return round(value * (1000 if thousands else 1), 2)


def _amounts(text: str) -> list[float]:
    """Money amounts in the text, except those said to be a deductible, premium or limit."""
    out = []
    for m in _MONEY.finditer(text):
        # Only the amount's own clause counts: "$3,700; my deductible is $500" excludes just the 500.
        before = re.split(r"[.;:,]\s", text[max(0, m.start() - 30) : m.start()])[-1]
        after = re.split(r"[.;:,]", text[m.end() : m.end() + 15])[0]
        if not _NOT_AN_ESTIMATE.search(before + after):
            out.append(_amount(m))
    return out


def _document_total(text: str) -> float | None:
    """The total of an estimate or invoice: the amount after 'Total', else its largest amount."""
    for label in _TOTAL.finditer(text):
        m = _MONEY.match(text, label.end())
        if m:
            return _amount(m)
    found = _amounts(text)
    return max(found) if found else None


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?;])\s+|\n+", text) if s.strip()]


def _injury_statements(text: str) -> tuple[list[str], list[str]]:
    """(sentences stating an injury, sentences denying one)."""
    said, denied = [], []
    for s in _sentences(text):
        if _NO_INJURY.search(s):
            denied.append(s)
        elif _INJURY.search(s):
            said.append(s)
    return said, denied


def extract_claim(fnol: Mapping[str, Any]) -> ExtractedClaim:
    """Read the claim's facts from an FNOL (as ``get_fnol`` returns it) with fixed rules, never guessing.

    - policy number: the first ``HO-``/``AU-``/``CP-`` number in the description, else in the attachments;
    - loss date: a labelled date ("Date of loss: ...") in the description, then in the attachments, then the
      first date in the description;
    - loss type: the first matching kind of loss in the description, else in the attachments;
    - estimated amount: the total of an attached estimate or invoice (documents win over what the claimant
      says, and a gap of more than 10% is noted), else the largest amount in the description that is not a
      deductible, premium or limit; none stated means ``None``;
    - injuries: any sentence stating an injury, anywhere, even when another sentence denies one (noted).
    """
    text = str(fnol.get("description") or "")
    attachments = [a for a in fnol.get("attachments") or [] if isinstance(a, dict)]
    docs = [str(a.get("text") or "") for a in attachments]
    notes: list[str] = []

    policy_numbers = [f"{m.group(1)}-{m.group(2)}" for t in (text, *docs) for m in _POLICY.finditer(t)]
    distinct = list(dict.fromkeys(policy_numbers))
    if len(distinct) > 1:
        notes.append(f"several policy numbers are mentioned ({', '.join(distinct)}); used {distinct[0]}")

    stated_date = _labelled_date(text)
    doc_date = next((d for t in docs if (d := _labelled_date(t))), None)
    loss_date = stated_date or doc_date or _first_date(text)
    described = stated_date or _first_date(text)
    if doc_date and described and doc_date != described:
        notes.append(f"the attachments give the loss date as {doc_date}, the description as {described}")

    loss_type: LossType | None = None
    for where in (text, "\n".join(docs)):
        loss_type = next((name for name, pattern in _LOSS_TYPES if pattern.search(where)), None)
        if loss_type:
            break

    stated = _amounts(text)
    amount: float | None = None
    source: str | None = None
    for a in attachments:
        if str(a.get("kind")) in _ESTIMATE_KINDS and (total := _document_total(str(a.get("text") or ""))):
            amount, source = total, str(a.get("name"))
            break
    if amount is None and stated:
        amount, source = max(stated), "description"
    elif amount is not None and stated and abs(max(stated) - amount) > DISCREPANCY * amount:
        notes.append(
            f"the claimant states {max(stated):,.2f} but {source} totals {amount:,.2f}; used {source}"
        )

    said: list[str] = []
    denied: list[str] = []
    for t in (text, *docs):
        yes, no = _injury_statements(t)
        said += yes
        denied += no
    if said and denied:
        notes.append(f"contradictory injury statements: {denied[0]!r} vs {said[0]!r}; treated as injured")

    return ExtractedClaim(
        policy_number=distinct[0] if distinct else None,
        loss_date=loss_date,
        loss_type=loss_type,
        estimated_amount=amount,
        amount_source=source,
        injuries=bool(said),
        notes=notes,
    )


# --- Decisions ---------------------------------------------------------------------------------------------


def _day(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(str(value)) if value else None


def coverage_problems(claim: ExtractedClaim, policy: Mapping[str, Any]) -> list[str]:
    """Why the policy does not cover this claim (empty when it does, as far as the facts go)."""
    number = policy.get("policy_number")
    if not policy.get("found"):
        return [f"policy {claim.policy_number} not found"]
    problems = []
    start, end, terminated = (
        _day(policy.get(k)) for k in ("effective_from", "effective_to", "terminated_on")
    )
    if claim.loss_date is not None and start and end:
        if claim.loss_date < start:
            problems.append(f"policy {number} was not active on {claim.loss_date}: it starts on {start}")
        elif claim.loss_date > end:
            problems.append(f"policy {number} was not active on {claim.loss_date}: it ended on {end}")
        elif terminated and claim.loss_date >= terminated:
            problems.append(
                f"policy {number} was not active on {claim.loss_date}: {policy.get('status')} on {terminated}"
            )
    if terminated is None and policy.get("status") in ("lapsed", "cancelled"):
        problems.append(f"policy {number} is {policy.get('status')} and its termination date is not on file")
    coverages = [str(c) for c in policy.get("coverages") or []]
    if claim.loss_type is not None and claim.loss_type not in coverages:
        problems.append(
            f"loss type {claim.loss_type} is not covered by policy {number} "
            f"(covers: {', '.join(coverages) or 'nothing'})"
        )
    return problems


def severity_for(amount: float, injuries: bool) -> Severity:
    """High for any injury or an estimate of 25,000 or more; medium from 5,000; low below."""
    if injuries or amount >= HIGH_AMOUNT:
        return "high"
    return "medium" if amount >= MEDIUM_AMOUNT else "low"


def queue_for(severity: Severity, injuries: bool, line: str) -> ClaimQueue:
    """Injuries go to bodily injury, other high-severity claims to major loss, vehicles to auto physical
    damage, small property claims to the fast track and the rest to property."""
    if injuries:
        return "bodily_injury"
    if severity == "high":
        return "major_loss"
    if line == "auto":
        return "auto_physical_damage"
    return "fast_track" if severity == "low" else "property"


def triage(claim: ExtractedClaim, policy: Mapping[str, Any] | None) -> Triage:
    """Flag the claim (every reason at once) or route it: severity, queue and the reserve to set.

    ``policy`` is what ``get_policy`` returned for the claim's policy number (``None`` when there is no
    number to look up). The reserve is the expected payout: the estimate capped at the policy limit, less the
    deductible (never below zero).
    """
    if claim.policy_number is None or policy is None:
        return Triage(flag_reasons=["missing policy number"])
    if not policy.get("found"):
        return Triage(flag_reasons=[f"policy {claim.policy_number} not found"])
    reasons = []
    if claim.loss_date is None:
        reasons.append("missing loss date")
    if claim.loss_type is None:
        reasons.append("loss type could not be determined")
    reasons += coverage_problems(claim, policy)
    if claim.estimated_amount is None:
        reasons.append("missing estimated amount")
    if reasons or claim.estimated_amount is None:
        return Triage(flag_reasons=reasons)
    amount = claim.estimated_amount
    severity = severity_for(amount, claim.injuries)
    limit, deductible = float(policy.get("limit") or 0), float(policy.get("deductible") or 0)
    reserve = round(max(0.0, min(amount, limit) - deductible), 2)
    basis = f"estimate {amount:,.2f}"
    if amount > limit:
        basis += f" capped at the {limit:,.2f} limit"
    basis += f" less the {deductible:,.2f} deductible"
    return Triage(
        severity=severity,
        queue=queue_for(severity, claim.injuries, str(policy.get("line"))),
        reserve=reserve,
        reserve_basis=basis,
    )


# --- The playbook and the output ---------------------------------------------------------------------------


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _describe(claim: ExtractedClaim) -> str:
    amount = _money(claim.estimated_amount) if claim.estimated_amount is not None else "not stated"
    return (
        f"policy {claim.policy_number or 'not stated'}, loss date {claim.loss_date or 'not stated'}, "
        f"loss type {claim.loss_type or 'unknown'}, estimate {amount}, "
        f"injuries {'yes' if claim.injuries else 'no'}"
    )


def _last(results: dict[str, list[tuple[str, Any]]], name: str) -> tuple[str, Any] | None:
    return results[name][-1] if name in results else None


def _done(outcome: tuple[str, Any] | None, key: str) -> bool:
    return (
        outcome is not None
        and outcome[0] == "success"
        and isinstance(outcome[1], dict)
        and bool(outcome[1].get(key))
    )


def _why_not(outcome: tuple[str, Any] | None) -> str:
    if outcome is None:
        return "not attempted"
    content = outcome[1]
    if isinstance(content, dict):
        return str(content.get("error") or content.get("message"))
    return str(content)


class _Conversation:
    """Everything the playbook and ``finish`` read from the conversation so far, computed the same way."""

    def __init__(self, messages: Sequence[BaseMessage]) -> None:
        self.claim_id = str(run_input(messages).get("claim_id", ""))
        self.results = tool_results(messages)
        fnol = _last(self.results, "get_fnol")
        self.fnol: dict[str, Any] | None = fnol[1] if fnol and isinstance(fnol[1], dict) else None
        found = self.fnol is not None and bool(self.fnol.get("found"))
        self.claim = extract_claim(self.fnol) if found and self.fnol else None
        policy = _last(self.results, "get_policy")
        self.policy: dict[str, Any] | None = policy[1] if policy and isinstance(policy[1], dict) else None
        # Decided once the policy is known, or at once when there is no policy number to look up.
        decidable = self.claim is not None and (self.policy is not None or self.claim.policy_number is None)
        self.triage = triage(self.claim, self.policy) if self.claim and decidable else None

    @property
    def already_triaged(self) -> bool:
        return self.fnol is not None and self.fnol.get("found") is True and self.fnol.get("status") != "new"


def steps(messages: Sequence[BaseMessage]) -> AIMessage:
    """What a careful claims handler does on the demo data, one step at a time."""
    c = _Conversation(messages)
    r = c.results
    if "get_fnol" not in r:
        return call(
            messages, "get_fnol", {"claim_id": c.claim_id}, f"Reading the first notice of loss {c.claim_id}."
        )
    if c.claim is None or c.already_triaged:
        return AIMessage(content=_summary(c))
    claim = c.claim
    if claim.policy_number and "get_policy" not in r:
        return call(
            messages,
            "get_policy",
            {"policy_number": claim.policy_number},
            f"Extracted: {_describe(claim)}. Checking policy {claim.policy_number}.",
        )
    t = c.triage
    if t is None:  # the policy look-up failed outright (not "not found"): a person must look
        return AIMessage(
            content=f"Could not read policy {claim.policy_number}: {_why_not(_last(r, 'get_policy'))}. "
            "Nothing was done."
        )
    if t.flag_reasons:
        if "flag_claim" not in r:
            reason = "; ".join(t.flag_reasons)
            return call(
                messages,
                "flag_claim",
                {"claim_id": c.claim_id, "reason": reason},
                f"Flagging {c.claim_id} for a person to review: {reason}.",
            )
        return AIMessage(content=_summary(c))
    assert t.severity is not None
    assert t.queue is not None
    assert t.reserve is not None
    if "route_claim" not in r:
        return call(
            messages,
            "route_claim",
            {"claim_id": c.claim_id, "queue": t.queue, "severity": t.severity},
            f"Routing {c.claim_id} to {t.queue} with {t.severity} severity.",
        )
    if not _done(_last(r, "route_claim"), "routed"):
        return AIMessage(content=_summary(c))
    if "set_claim_reserve" not in r:
        why = "injuries are reported" if claim.injuries else "no injuries are reported"
        return call(
            messages,
            "set_claim_reserve",
            {"claim_id": c.claim_id, "amount": t.reserve, "injuries": claim.injuries},
            f"Reserve {_money(t.reserve)} on {c.claim_id} ({t.reserve_basis}); {why}.",
        )
    return AIMessage(content=_summary(c))


def _summary(c: _Conversation) -> str:
    """The final answer: what was found, decided and actually done."""
    if c.fnol is None or not c.fnol.get("found"):
        return f"I could not find the first notice of loss {c.claim_id}; nothing was done."
    if c.already_triaged:
        return (
            f"Claim {c.claim_id} was already triaged (status {c.fnol.get('status')}, queue "
            f"{c.fnol.get('queue') or 'none'}); nothing was done."
        )
    assert c.claim is not None
    assert c.triage is not None
    r, t = c.results, c.triage
    lines = []
    if t.flag_reasons:
        flag = _last(r, "flag_claim")
        if _done(flag, "flagged"):
            lines.append(
                f"Claim {c.claim_id} was flagged for manual review: {'; '.join(t.flag_reasons)}. "
                "It was not routed and no reserve was set."
            )
        else:
            lines.append(
                f"Claim {c.claim_id} needs manual review ({'; '.join(t.flag_reasons)}), but flagging it "
                f"failed: {_why_not(flag)}."
            )
    else:
        route = _last(r, "route_claim")
        if _done(route, "routed"):
            lines.append(f"Claim {c.claim_id} was routed to the {t.queue} queue with {t.severity} severity.")
            reserve = _last(r, "set_claim_reserve")
            if _done(reserve, "reserve_set") and reserve is not None:
                lines.append(
                    f"A reserve of {_money(float(reserve[1]['amount']))} was set ({t.reserve_basis})."
                )
            else:
                lines.append(f"The reserve of {_money(t.reserve or 0)} was not set: {_why_not(reserve)}")
        else:
            lines.append(f"Claim {c.claim_id} was not routed: {_why_not(route)}.")
    lines.append(f"Extracted: {_describe(c.claim)}.")
    if c.claim.notes:
        lines.append("Notes: " + "; ".join(c.claim.notes) + ".")
    return "\n".join(lines)


def finish(messages: Sequence[BaseMessage]) -> dict[str, Any]:
    """The run's output: the extracted claim, the triage decision and what was actually done."""
    c = _Conversation(messages)
    r, t = c.results, c.triage
    flag, route, reserve = (_last(r, n) for n in ("flag_claim", "route_claim", "set_claim_reserve"))
    reserve_out: dict[str, Any] | None = None
    if t is not None and t.reserve is not None and "route_claim" in r:
        if _done(reserve, "reserve_set") and reserve is not None:
            reserve_out = {
                "amount": float(reserve[1]["amount"]),
                "injuries": bool(reserve[1]["injuries"]),
                "status": "set",
                "detail": t.reserve_basis,
            }
        else:
            text = _why_not(reserve)
            why = reserve[1].get("not_run") if reserve and isinstance(reserve[1], dict) else None
            status = why if why in ("rejected", "expired") else "not_set"
            reserve_out = {
                "amount": t.reserve,
                "injuries": c.claim.injuries if c.claim else None,
                "status": status,
                "detail": text,
            }
    return {
        "claim_id": c.claim_id,
        "extracted": c.claim.model_dump(mode="json") if c.claim else None,
        "already_triaged": c.already_triaged,
        "flagged": _done(flag, "flagged"),
        "flag_reason": "; ".join(t.flag_reasons) if t and t.flag_reasons else None,
        "routed": _done(route, "routed"),
        "severity": t.severity if t else None,
        "queue": t.queue if t else None,
        "reserve": reserve_out,
        "summary": last_text(messages),
        "tools_used": sorted(r),
    }


playbook = answering(steps, finish, SPEC.derived_fields)
