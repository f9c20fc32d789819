"""Claims triage: extracts a first notice of loss, checks the policy, then routes and reserves or flags it."""

from agents.claims_triage.agent import SPEC

__all__ = ["SPEC"]
