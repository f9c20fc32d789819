"""The offline (scripted) model's playbook for ``shipment_exceptions``: what a careful logistics coordinator
does on the demo data, ending with a ``final_answer`` call like any model.

It reads the shipment and its scan events and works out the exception (``assess``). A shipment on time needs
nothing. Otherwise it reads the customer's e-mails to judge the impact, writes to the customer, and when the
delay is more than three days either rebooks onto a faster quoted service or, when there is none, proposes a
shipping credit. If the message to the customer is not sent, it stops and leaves the rest to a person.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, Field

from agents.playbook import answering, call, last_text, run_input, tool_results
from agents.shipment_exceptions.agent import SPEC

REMEDY_AFTER_DAYS = 3  # a delay of more than this many days gets a rebooking or a credit
CREDIT_PER_DAY = 0.10  # share of the shipping cost credited per day late...
CREDIT_CAP = 0.50  # ...up to this share

EXCEPTIONS = {
    "DELAY_WEATHER": "severe weather",
    "DELAY_MECHANICAL": "a vehicle breakdown",
    "MISSED_CONNECTION": "a missed connection at a hub",
    "CUSTOMS_HOLD": "a customs hold",
    "ADDRESS_ISSUE": "a problem with the delivery address",
    "CAPACITY_ROLLOVER": "the vessel being overbooked (the cargo was moved to the next sailing)",
}
_URGENT = re.compile(
    r"\b(?:urgent\w*|asap|as soon as possible|deadline|production line|line stops|surger(?:y|ies)|patients?|"
    r"spoil\w*|perishable|shelf life|penalt(?:y|ies)|opening|launch|load-in|backorders?)\b",
    re.IGNORECASE,
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

Impact = Literal["none", "low", "medium", "high"]


class ExceptionAssessment(BaseModel):
    """What happened to a shipment, read from its record, its scan events and the customer's e-mails."""

    shipment_id: str
    exception: bool = Field(description="True when the customer must hear from us (late, or date unknown)")
    cause: str | None = None
    cause_codes: list[str] = Field(default_factory=list)
    promised_date: dt.date
    eta: dt.date | None = Field(default=None, description="Expected delivery; None when unknown or delivered")
    delivered_on: dt.date | None = None
    delay_days: int | None = Field(default=None, description="Days after the promised date; None if unknown")
    latest_exception_at: dt.datetime | None = None
    impact: Impact = "none"
    impact_note: str | None = None


def _day(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(str(value)[:10]) if value else None


def delay_days(promised: dt.date, actual: dt.date) -> int:
    """Calendar days between the promised date and the actual or expected one (negative when early)."""
    return (actual - promised).days


def assess(
    shipment: Mapping[str, Any], events: Sequence[Mapping[str, Any]], emails: Sequence[Mapping[str, Any]] = ()
) -> ExceptionAssessment:
    """Work out the exception from the events in time order.

    The expected date starts at the promised date. An event with a ``new_eta`` replaces it; an exception event
    without one makes it unknown until a later event gives it; a DELIVERED event fixes the actual date. The
    customer must hear from us when the shipment is (or will be) late or its date is unknown; an exception
    that was made up for (delivered or expected on time) needs nothing. Impact is high when the customer's
    e-mails mention a deadline, perishable goods or similar stakes, else medium for a delay of more than three
    days (or an unknown one), else low.
    """
    promised = _day(shipment.get("promised_date"))
    assert promised is not None, "a shipment always has a promised date"
    eta: dt.date | None = promised
    delivered: dt.date | None = None
    codes: list[str] = []
    latest: dt.datetime | None = None
    for e in sorted(events, key=lambda e: str(e.get("at"))):
        code = str(e.get("code"))
        if code in EXCEPTIONS:
            latest = dt.datetime.fromisoformat(str(e.get("at")))
            if code not in codes:
                codes.append(code)
        if code == "DELIVERED":
            delivered = _day(e.get("at"))
        elif e.get("new_eta"):
            eta = _day(e.get("new_eta"))
        elif code in EXCEPTIONS:
            eta = None
    actual = delivered or eta
    delay = delay_days(promised, actual) if actual else None
    exception = delay is None or delay > 0
    if not exception:
        cause = None
    elif codes:
        cause = ", then ".join(EXCEPTIONS[c] for c in codes)
    else:
        cause = "a carrier delay (no reason given)"
    impact: Impact = "none"
    note = None
    if exception:
        for mail in emails:
            hit = next((s for s in _sentences(str(mail.get("body", ""))) if _URGENT.search(s)), None)
            if hit:
                impact, note = "high", f"customer wrote on {str(mail.get('received_at'))[:10]}: {hit!r}"
                break
        else:
            impact = "medium" if delay is None or delay > REMEDY_AFTER_DAYS else "low"
    return ExceptionAssessment(
        shipment_id=str(shipment.get("shipment_id")),
        exception=exception,
        cause=cause,
        cause_codes=codes,
        promised_date=promised,
        eta=None if delivered else eta,
        delivered_on=delivered,
        delay_days=delay,
        latest_exception_at=latest,
        impact=impact,
        impact_note=note,
    )


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?;])\s+|\n+", text) if s.strip()]


def needs_remedy(a: ExceptionAssessment) -> bool:
    """A known delay of more than three days calls for a rebooking or a credit."""
    return a.delay_days is not None and a.delay_days > REMEDY_AFTER_DAYS


def faster_option(options: Sequence[Mapping[str, Any]], eta: dt.date | None) -> dict[str, Any] | None:
    """The quote arriving earliest, if it beats the current expected date (ties go to the cheaper one)."""
    if eta is None:
        return None
    faster = [dict(o) for o in options if (d := _day(o.get("eta"))) is not None and d < eta]
    return min(faster, key=lambda o: (str(o["eta"]), float(o["extra_cost"])), default=None)


def credit_amount(shipping_cost: float, days_late: int) -> float:
    """Ten percent of the shipping cost per day late, at most half of it."""
    return round(shipping_cost * min(CREDIT_CAP, CREDIT_PER_DAY * days_late), 2)


def _fmt(d: dt.date) -> str:
    return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def plan(
    shipment: Mapping[str, Any], a: ExceptionAssessment, options: Sequence[Mapping[str, Any]] | None
) -> tuple[str, dict[str, Any], str] | None:
    """The remedy to propose after notifying the customer: (tool, arguments, why), or None."""
    if not needs_remedy(a) or a.delay_days is None:
        return None
    sid = a.shipment_id
    option = None if a.delivered_on else faster_option(options or [], a.eta)
    if option is not None:
        args = {"shipment_id": sid, "carrier": option["carrier"], "extra_cost": float(option["extra_cost"])}
        why = (
            f"{option['carrier']} ({option['service']}) would deliver on {option['eta']} instead of "
            f"{a.eta}, for {float(option['extra_cost']):.2f} extra"
        )
        return "rebook_shipment", args, why
    amount = credit_amount(float(shipment.get("shipping_cost") or 0), a.delay_days)
    if amount <= 0:
        return None
    reason = f"Delivered {_days(a.delay_days)} late" if a.delivered_on else f"{_days(a.delay_days)} late"
    reason += f" because of {a.cause}."
    why = f"no faster service is available; credit {amount:.2f} ({reason})"
    if a.delivered_on:
        why = f"already delivered; credit {amount:.2f} ({reason})"
    return "issue_shipping_credit", {"shipment_id": sid, "amount": amount, "reason": reason}, why


def customer_message(
    shipment: Mapping[str, Any],
    a: ExceptionAssessment,
    emails: Sequence[Mapping[str, Any]],
    remedy: tuple[str, dict[str, Any], str] | None,
) -> str:
    """The e-mail to the customer: what happened, the new date, what they can do, and that we follow up."""
    customer = shipment.get("customer") or {}
    first = str(customer.get("contact") or customer.get("name") or "there").split()[0]
    what = (
        f"your shipment {a.shipment_id} (reference {shipment.get('reference')}, {shipment.get('origin')} "
        f"to {shipment.get('destination')})"
    )
    paragraphs = []
    if a.delivered_on and a.delay_days is not None:
        paragraphs.append(
            f"We are sorry that {what} was delivered on {_fmt(a.delivered_on)}, {_days(a.delay_days)} "
            f"after the {_fmt(a.promised_date)} we promised, because of {a.cause}."
        )
    elif a.eta and a.delay_days is not None:
        paragraphs.append(
            f"We are sorry: {what} is running {_days(a.delay_days)} late because of {a.cause}. The new "
            f"expected delivery date is {_fmt(a.eta)} (we promised {_fmt(a.promised_date)})."
        )
    else:
        paragraphs.append(
            f"We are sorry: {what}, promised for {_fmt(a.promised_date)}, is delayed because of "
            f"{a.cause}. We do not have a new delivery date yet and will write again as soon as we do."
        )
    last = a.cause_codes[-1] if a.cause_codes else ""
    if last == "CUSTOMS_HOLD" and a.eta is None and not a.delivered_on:
        paragraphs.append(
            "Customs may need documents from the importer; if our broker contacts you, a quick reply "
            "will speed up the release."
        )
    if last == "ADDRESS_ISSUE" and not a.delivered_on:
        since = a.latest_exception_at.isoformat() if a.latest_exception_at else ""
        later = [m for m in emails if str(m.get("received_at")) >= since]
        if later:
            paragraphs.append(
                f"Thank you for the address details in your e-mail of "
                f"{_fmt(_day(later[-1].get('received_at')) or a.promised_date)}; we will use them to "
                "arrange the next delivery attempt."
            )
        else:
            paragraphs.append(
                "Please reply with the full delivery address, including the suite and dock number."
            )
    # Promise nothing that still needs a person's sign-off: say what is being looked at, confirm later.
    if remedy is not None and remedy[0] == "rebook_shipment":
        paragraphs.append("We are looking at moving it to a faster service and will confirm any change.")
    elif remedy is not None:
        paragraphs.append("We are reviewing a credit on your account for the delay and will confirm it.")
    return "\n\n".join([f"Hello {first},", *paragraphs, "Kind regards,\nShipment Care"])


# --- The playbook and the output ---------------------------------------------------------------------------


def _last(results: dict[str, list[tuple[str, Any]]], name: str) -> tuple[str, Any] | None:
    return results[name][-1] if name in results else None


def _outcome(result: tuple[str, Any] | None, key: str) -> tuple[str, str | None]:
    """(done | refused | rejected | expired | blocked | not_run | not_proposed, detail) of a write call."""
    if result is None:
        return "not_proposed", None
    status, content = result
    if isinstance(content, dict) and "not_run" in content:
        why = str(content["not_run"])
        return (why if why in ("rejected", "expired", "blocked") else "not_run"), str(content.get("message"))
    if isinstance(content, dict):
        if status == "success" and content.get(key):
            return "done", None
        return "refused", str(content.get("error"))
    return "not_run", str(content)


_DONE_KEY = {"notify_customer": "sent", "rebook_shipment": "rebooked", "issue_shipping_credit": "issued"}


class _Conversation:
    """Everything the playbook and ``finish`` read from the conversation so far, computed the same way."""

    def __init__(self, messages: Sequence[BaseMessage]) -> None:
        self.messages = messages
        self.shipment_id = str(run_input(messages).get("shipment_id", ""))
        self.results = tool_results(messages)
        self.shipment = self._dict("get_shipment")
        self.events = self._list("get_shipment_events", "events")
        self.emails = self._list("get_customer_emails", "emails")
        self.options = self._list("get_rebooking_options", "options")
        self.assessment: ExceptionAssessment | None = None
        self.remedy: tuple[str, dict[str, Any], str] | None = None
        if self.found and self.events is not None and self.shipment is not None:
            self.assessment = assess(self.shipment, self.events, self.emails or [])
            self.remedy = plan(self.shipment, self.assessment, self.options)

    def _dict(self, name: str) -> dict[str, Any] | None:
        r = _last(self.results, name)
        return r[1] if r is not None and isinstance(r[1], dict) else None

    def _list(self, name: str, key: str) -> list[dict[str, Any]] | None:
        r = self._dict(name)
        return [dict(x) for x in r.get(key) or []] if r is not None else None

    @property
    def found(self) -> bool:
        return self.shipment is not None and bool(self.shipment.get("found"))

    @property
    def already_notified(self) -> str | None:
        return (
            str(self.shipment["last_notified_at"])
            if self.found and self.shipment and self.shipment.get("last_notified_at")
            else None
        )

    def actions(self) -> list[dict[str, Any]]:
        """Every write the agent proposed, with the arguments it proposed and what came of it."""
        out = []
        for m in self.messages:
            if not isinstance(m, AIMessage):
                continue
            for tc in m.tool_calls:
                if tc["name"] in _DONE_KEY:
                    outcome, detail = _outcome(_last(self.results, tc["name"]), _DONE_KEY[tc["name"]])
                    out.append(
                        {
                            "tool": tc["name"],
                            "arguments": dict(tc["args"]),
                            "outcome": outcome,
                            "detail": detail,
                        }
                    )
        return out


def steps(messages: Sequence[BaseMessage]) -> AIMessage:
    """What a careful logistics coordinator does on the demo data, one step at a time."""
    c = _Conversation(messages)
    r, sid = c.results, c.shipment_id
    if "get_shipment" not in r:
        return call(messages, "get_shipment", {"shipment_id": sid}, f"Reading shipment {sid}.")
    if not c.found or c.already_notified:
        return AIMessage(content=_summary(c))
    if "get_shipment_events" not in r:
        return call(
            messages, "get_shipment_events", {"shipment_id": sid}, "Reading the carrier's scan events."
        )
    a = c.assessment
    if a is None or not a.exception:
        return AIMessage(content=_summary(c))
    if "get_customer_emails" not in r:
        return call(
            messages,
            "get_customer_emails",
            {"shipment_id": sid},
            f"Exception: {a.cause}. Reading the customer's e-mails to judge the impact.",
        )
    if needs_remedy(a) and not a.delivered_on and "get_rebooking_options" not in r:
        return call(
            messages,
            "get_rebooking_options",
            {"shipment_id": sid},
            f"{_days(a.delay_days or 0)} late: looking for a faster service.",
        )
    if "notify_customer" not in r:
        message = customer_message(c.shipment or {}, a, c.emails or [], c.remedy)
        late = f"{_days(a.delay_days)} late" if a.delay_days is not None else "delivery date unknown"
        return call(
            messages,
            "notify_customer",
            {"shipment_id": sid, "message": message},
            f"Shipment {sid}: {late} because of {a.cause}; impact {a.impact}. Proposed message to the "
            "customer.",
        )
    if _outcome(_last(r, "notify_customer"), "sent")[0] != "done":
        return AIMessage(content=_summary(c))
    if c.remedy is not None and c.remedy[0] not in r:
        tool, args, why = c.remedy
        return call(messages, tool, args, f"Shipment {sid} is {_days(a.delay_days or 0)} late: {why}.")
    return AIMessage(content=_summary(c))


def _summary(c: _Conversation) -> str:
    """The final answer: the exception, the impact and what was actually done."""
    sid = c.shipment_id
    if not c.found:
        return f"I could not find shipment {sid}; nothing was done."
    if c.already_notified:
        return (
            f"The customer was already notified about shipment {sid} on {c.already_notified[:10]}; nothing "
            "more was done. A person should follow up if anything changed since."
        )
    a = c.assessment
    if a is None:
        return f"I could not read the scan events of shipment {sid}; nothing was done."
    if not a.exception:
        if not c.events:
            return (
                f"Shipment {sid} has no scan events yet and is due on {_fmt(a.promised_date)}: no exception."
            )
        state = (
            f"delivered on {_fmt(a.delivered_on)}"
            if a.delivered_on
            else f"expected on {_fmt(a.eta or a.promised_date)}"
        )
        made_up = f" despite {', '.join(EXCEPTIONS[x] for x in a.cause_codes)}" if a.cause_codes else ""
        return (
            f"Shipment {sid} is on time{made_up}: {state}, promised {_fmt(a.promised_date)}. No exception; "
            "the customer was not contacted."
        )
    when = (
        f"delivered on {_fmt(a.delivered_on)}"
        if a.delivered_on
        else f"new expected date {_fmt(a.eta)}"
        if a.eta
        else "new delivery date unknown"
    )
    late = f"{_days(a.delay_days)} late" if a.delay_days is not None else "delay not yet known"
    lines = [
        f"Shipment {sid}: {a.cause}; {when} (promised {_fmt(a.promised_date)}), {late}. "
        f"Impact: {a.impact}" + (f" ({a.impact_note})." if a.impact_note else ".")
    ]
    notified, detail = _outcome(_last(c.results, "notify_customer"), "sent")
    if notified != "done":
        lines.append(f"The customer was not notified ({notified}: {detail}).")
        if c.remedy is not None:
            lines.append(f"The {c.remedy[0]} proposal ({c.remedy[2]}) was not made: it is left to a person.")
        return "\n".join(lines)
    result = _last(c.results, "notify_customer")
    to = result[1].get("to") if result and isinstance(result[1], dict) else "the customer"
    lines.append(f"The customer was notified at {to}.")
    if c.remedy is None:
        if a.delay_days is None:
            lines.append("No rebooking or credit until the new delivery date is known.")
        return "\n".join(lines)
    tool = c.remedy[0]
    outcome, detail = _outcome(_last(c.results, tool), _DONE_KEY[tool])
    done = _last(c.results, tool)
    if outcome == "done" and done is not None and tool == "rebook_shipment":
        lines.append(
            f"Rebooked with {done[1]['carrier']} ({done[1]['service']}) for {done[1]['extra_cost']:.2f} "
            f"extra; new expected date {_fmt(_day(done[1]['new_eta']) or a.promised_date)}."
        )
    elif outcome == "done" and done is not None:
        lines.append(f"Shipping credit of {done[1]['amount']:.2f} issued.")
    else:
        lines.append(f"The proposed {tool} was not carried out ({outcome}: {detail}).")
    return "\n".join(lines)


def finish(messages: Sequence[BaseMessage]) -> dict[str, Any]:
    """The run's output: the exception summary fields and the actions proposed, with their outcomes."""
    c = _Conversation(messages)
    a = c.assessment
    notify = _last(c.results, "notify_customer")
    outcome, detail = _outcome(notify, "sent")
    notification: dict[str, Any] = {"status": "not_needed" if notify is None else outcome, "detail": detail}
    if notify is not None and outcome == "done" and isinstance(notify[1], dict):
        notification |= {"to": notify[1].get("to"), "message": notify[1].get("message")}
    return {
        "shipment_id": c.shipment_id,
        "already_notified": c.already_notified is not None,
        **({k: v for k, v in a.model_dump(mode="json").items() if k != "shipment_id"} if a else {}),
        "notification": notification,
        "actions_proposed": c.actions(),
        "summary": last_text(messages),
        "tools_used": sorted(c.results),
    }


playbook = answering(steps, finish, SPEC.derived_fields)
