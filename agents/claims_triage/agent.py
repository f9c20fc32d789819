"""The ``claims_triage`` agent: read a first notice of loss, check the policy, then route and reserve or flag.

The model extracts the claim's facts, looks up the policy, and either flags the claim for a person (missing
facts, policy not in force on the loss date, loss type not covered) or routes it with a severity and sets its
reserve (large or injury reserves need a senior adjuster). The offline playbook is in ``offline.py``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.spec import AgentSpec


class ClaimsInput(BaseModel):
    """A first notice of loss to triage."""

    model_config = ConfigDict(extra="forbid")
    claim_id: str = Field(pattern=r"^FNOL-\d{3,10}$", description="The first notice of loss, e.g. FNOL-2001")


PROMPT = """You triage first notices of loss (FNOL) for an insurer.
1. Read the FNOL with get_fnol. If it was already triaged (status routed or flagged), do nothing and say so.
2. Extract the policy number, loss date, loss type (water_damage, flood, fire, theft, storm, vandalism,
   collision, glass), estimated amount and whether anyone may be injured. Prefer attached estimates over the
   claimant's own figure; treat any mention of an injury as an injury. Never guess a missing fact.
3. Look up the policy with get_policy. It covers the loss only if the loss date is within its period (and
   before terminated_on) and the loss type is one of its coverages.
4. If a fact is missing, the policy is unknown, not in force on the loss date or does not cover the loss
   type: flag_claim with every reason, and stop (never route a flagged claim).
5. Otherwise route_claim with a severity (high: injuries or estimate >= 25,000; medium: >= 5,000; else low)
   and a queue (bodily_injury for injuries, major_loss for other high claims, auto_physical_damage for auto
   policies, fast_track for low, property otherwise), then set_claim_reserve with the estimate capped at
   the limit less the deductible, stating injuries truthfully. Large or injury reserves wait for a senior
   adjuster.
Finish by calling final_answer: the decision, and a short summary of the extracted facts, the decision and
what was actually done."""


class TriageOutput(BaseModel):
    """What a finished triage must return; a flagged claim is never routed."""

    claim_id: str
    flagged: bool
    routed: bool
    severity: str | None
    queue: str | None
    summary: str = Field(min_length=1)
    tools_used: list[str]

    @model_validator(mode="after")
    def _flagged_is_not_routed(self) -> TriageOutput:
        if self.flagged and self.routed:
            raise ValueError("a flagged claim must not be routed")
        return self


SPEC = AgentSpec(
    name="claims_triage",
    description=(
        "Triages a first notice of loss: extracts the claim, checks the policy, then routes it and sets its "
        "reserve (large or injury reserves need a senior adjuster) or flags it for review."
    ),
    input_model=ClaimsInput,
    example_input={"claim_id": "FNOL-2001"},
    prompt=PROMPT,
    scopes=frozenset({"claims:read", "policies:read", "claims:write", "reserves:write"}),
    offline="agents.claims_triage.offline:playbook",
    output_model=TriageOutput,
    tags=("insurance",),
    owner={"team": "Claims intake", "role": "approver:claims"},
)
