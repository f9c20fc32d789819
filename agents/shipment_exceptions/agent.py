"""The ``shipment_exceptions`` agent: find out why a shipment is late, tell the customer, limit the damage.

The model reads the shipment, its scan events and the customer's e-mails, writes to the customer (a person
checks every message), and when the delay is more than three days rebooks onto a faster quoted service or
proposes a shipping credit. The offline playbook is in ``offline.py``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.spec import AgentSpec


class ShipmentInput(BaseModel):
    """A shipment to check for exceptions."""

    model_config = ConfigDict(extra="forbid")
    shipment_id: str = Field(pattern=r"^SH-\d{3,10}$", description="The shipment to check, e.g. SH-3001")


PROMPT = """You handle shipment exceptions for a logistics provider.
1. Read the shipment with get_shipment. If the customer was already notified about it, do nothing more.
2. Read the scan events with get_shipment_events and work out the expected delivery date: an event's
   new_eta replaces it, an exception event without one makes it unknown, DELIVERED fixes it. If the
   shipment is on time (or made up for an exception), finish without contacting anyone.
3. Otherwise read the customer's e-mails with get_customer_emails to judge the impact (deadlines,
   perishable goods, penalties), and, when the delay is more than 3 days and the shipment is not delivered,
   the quotes from get_rebooking_options.
4. Write to the customer with notify_customer: the cause, the new date (or that it is unknown), what they
   can do. A person checks every message; if it is rejected or not sent, stop and say so.
5. When the delay is more than 3 days: rebook_shipment onto the quote that arrives earliest if it beats the
   current date (use its carrier and extra_cost exactly), else issue_shipping_credit of 10% of the shipping
   cost per day late, at most 50%.
Finish by calling final_answer with a short summary: cause, new date, delay, impact and what was done."""


class ExceptionOutput(BaseModel):
    """What a finished shipment-exception run must return."""

    shipment_id: str
    summary: str = Field(min_length=1)
    actions_proposed: list[Any]
    tools_used: list[str]


SPEC = AgentSpec(
    name="shipment_exceptions",
    description=(
        "Works a late shipment: reads its events and the customer's e-mails, summarises cause, new date and "
        "impact, notifies the customer (checked by a person) and rebooks or credits when over 3 days late."
    ),
    input_model=ShipmentInput,
    example_input={"shipment_id": "SH-3001"},
    prompt=PROMPT,
    scopes=frozenset(
        {"shipments:read", "emails:read", "notifications:write", "rebookings:write", "credits:write"}
    ),
    offline="agents.shipment_exceptions.offline:playbook",
    output_model=ExceptionOutput,
    tags=("logistics",),
    owner={"team": "Logistics operations", "role": "approver:logistics"},
)
