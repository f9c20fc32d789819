"""Approval policies, approval requests and decisions, the effects ledger and the audit ledger."""
