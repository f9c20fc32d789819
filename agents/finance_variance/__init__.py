"""Finance variance: explains month-end budget-vs-actual variances with cited ledger lines and invoices."""

from agents.finance_variance.agent import SPEC

__all__ = ["SPEC"]
