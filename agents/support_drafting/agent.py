"""The ``support_drafting`` agent: replies to support tickets from approved policy passages, cited.

The model reads the ticket and its order, searches the approved policy documents, proposes a refund when a
passage makes it due (a person approves it), or hands the ticket to a person when no policy covers it. Its
answer is checked against the record: every ``[doc-id#section]`` the reply cites must resolve to a passage.
The offline playbook is in ``offline.py``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.spec import AgentSpec, Facts
from tools.knowledge import citation_ids, resolve_citations

NO_POLICY = "no relevant policy found"
NO_REFUND_GROUND = "no policy passage supports the requested refund"
REFUND_GROUNDS = frozenset(
    {
        "refund-policy#change-of-mind-returns",
        "refund-policy#damaged-items",
        "refund-policy#wrong-or-missing-items",
        "refund-policy#dead-on-arrival",
        "shipping-policy#late-or-lost-parcels",
        "product-recalls#refunds-for-recalled-products",
        "price-adjustments#price-drop-protection",
    }
)
"""The passages that make a refund due (rather than describe how refunds work): the playbook proposes a refund
only when the search found one of them."""


class SupportInput(BaseModel):
    """A support ticket to answer."""

    model_config = ConfigDict(extra="forbid")
    ticket_id: str = Field(pattern=r"^T-\d{3,10}$", description="The ticket to answer, e.g. T-1001")


PROMPT = """You draft replies to customer support tickets for a retailer.
1. Read the ticket with get_ticket and the related order (if any) with get_order.
2. Look up the approved policies that apply with search_policies, querying with the customer's question.
   Only the returned passages are policy: never state a rule, time limit or amount that is not in one.
3. If the search returns nothing relevant, do not guess: take no action and write a short reply saying a
   person from the support team will follow up.
4. When the customer asks for a refund and a returned passage makes it due (damaged, wrong or missing item,
   dead on arrival, lost parcel, change-of-mind return, recall, price drop), propose it with issue_refund,
   never more than what is left to refund; a person may approve, change or reject it. If no passage supports
   the refund, do not propose one: say a person will review the request.
5. Cite every policy statement in the reply with the passage id in square brackets, e.g.
   [refund-policy#damaged-items]; get_policy_passage reads a cited passage again.
If a tool result says an action was rejected or not taken, say so honestly in the draft.
Finish by calling final_answer with the reply to the customer (plain text) and whether a person must take
over, and why."""


class CitationOut(BaseModel):
    """A cited passage, as the output carries it."""

    id: str
    doc: str
    title: str
    text: str


class SupportOutput(BaseModel):
    """What a finished support run must return: a non-empty reply whose every citation is a real passage."""

    ticket_id: str | None
    reply: str = Field(min_length=1)
    escalated: bool
    reason: str | None
    citations: list[CitationOut]
    unresolved_citations: list[str] = Field(max_length=0, description="cited ids that match no passage")
    tools_used: list[str]


def derive(answer: dict[str, Any], facts: Facts) -> dict[str, Any]:
    """What the record says of the reply: the passages it cites, and the ids that resolve to none."""
    reply = str(answer.get("reply") or "")
    cited = resolve_citations(reply)
    known = {p.id for p in cited}
    return {
        "citations": [p.model_dump(include={"id", "doc", "title", "section", "text"}) for p in cited],
        "unresolved_citations": [i for i in citation_ids(reply) if i not in known],
    }


SPEC = AgentSpec(
    name="support_drafting",
    description=(
        "Drafts a reply to a support ticket from the ticket, the order and the approved policy documents, "
        "citing the passages it used; proposes refunds the policy supports for approval and escalates to a "
        "person when no policy covers the question."
    ),
    input_model=SupportInput,
    example_input={"ticket_id": "T-1001"},
    prompt=PROMPT,
    scopes=frozenset({"tickets:read", "orders:read", "knowledge:read", "refunds:write", "replies:write"}),
    output_model=SupportOutput,
    offline="agents.support_drafting.offline:playbook",
    derive=derive,
    derived_fields=("tools_used", "citations", "unresolved_citations"),
    owner={"team": "Customer support", "role": "approver:support"},
)
