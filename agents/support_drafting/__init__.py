"""Support reply drafting: reads the ticket and order, retrieves policy passages to cite, proposes refunds
the policy supports (gated), and escalates to a person when no policy covers the question."""

from agents.support_drafting.agent import SPEC

__all__ = ["SPEC"]
