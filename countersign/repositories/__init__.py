"""Queries over the kernel's records, one module per domain (runs, keys). Callers own the transaction: these
functions read, add and flush, never commit."""
