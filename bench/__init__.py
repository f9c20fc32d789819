"""Benchmarks: Countersign's default stack against a bare Temporal workflow on the same server."""
