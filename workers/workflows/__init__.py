"""Workflow definitions (sandbox-clean modules: no settings, no I/O, no clock)."""
