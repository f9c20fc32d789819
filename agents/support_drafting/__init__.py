"""Support reply drafting: reads the ticket and order, proposes a refund when asked, drafts the reply."""

from agents.support_drafting.agent import SPEC

__all__ = ["SPEC"]
