"""Process-wide settings of the long-running services (the API and the worker)."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Keep what start-up allocated (modules, compiled graphs and schemas: hundreds of thousands of objects
    that live as long as the process) out of the garbage collector's full passes.

    A full pass over them takes 50–150 ms, during which the event loop stands still: every request and
    every workflow task in flight waits. Called once start-up is done and before the process serves (the
    collection that precedes the freeze, so no garbage is kept for good, stops the loop once).
    """
    gc.collect()
    gc.freeze()
