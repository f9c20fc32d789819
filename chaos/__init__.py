"""The chaos suite (``make chaos``): faults injected into a running stack, invariants checked after."""
