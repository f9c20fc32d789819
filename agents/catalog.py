"""The public index of agents: what the API lists and the worker builds graphs for."""

from __future__ import annotations

from agents.claims_triage import SPEC as CLAIMS_TRIAGE
from agents.shipment_exceptions import SPEC as SHIPMENT_EXCEPTIONS
from agents.spec import AgentSpec
from agents.support_drafting import SPEC as SUPPORT_DRAFTING

AGENTS: dict[str, AgentSpec] = {s.name: s for s in (SUPPORT_DRAFTING, CLAIMS_TRIAGE, SHIPMENT_EXCEPTIONS)}


def get_agent(name: str) -> AgentSpec | None:
    """The agent of that name, if there is one."""
    return AGENTS.get(name)
