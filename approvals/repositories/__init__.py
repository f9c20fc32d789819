"""Queries over the approvals package's records, one module per domain (approvals, ledger,
webhooks, policy calls).
Callers own the transaction: these functions read, add and flush, never commit."""
