"""A real worker process that stops dead at a fault point, so a test can SIGKILL it there.

``python -m tests.fault_worker`` runs ``countersign worker`` after replacing one function of the worker's
code (the production code has no fault hooks): ``TEST_FAULT_POINT`` is ``in_model`` (before a model call),
``before_tool`` (before a tool runs) or ``after_effect`` (after a write tool's effect committed, before its
activity completes). On reaching it, the worker writes its pid to ``TEST_FAULT_MARKER`` and waits forever.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import agents.graph
from cli.main import main

POINT = os.environ["TEST_FAULT_POINT"]
MARKER = Path(os.environ["TEST_FAULT_MARKER"])


async def _stop_here() -> None:
    await asyncio.to_thread(MARKER.write_text, str(os.getpid()))
    await asyncio.Event().wait()


_ask_model, _execute = agents.graph.ask_model, agents.graph._execute


async def ask_model(*args: Any, **kwargs: Any) -> Any:
    if POINT == "in_model":
        await _stop_here()
    return await _ask_model(*args, **kwargs)


async def execute(services: Any, agent: str, tool: Any, *args: Any, **kwargs: Any) -> Any:
    if POINT == "before_tool":
        await _stop_here()
    result = await _execute(services, agent, tool, *args, **kwargs)
    if POINT == "after_effect" and tool.kind == "write":
        await _stop_here()
    return result


if __name__ == "__main__":
    agents.graph.ask_model = ask_model  # type: ignore[assignment]
    agents.graph._execute = execute  # type: ignore[assignment]
    sys.argv = ["countersign", "worker"]
    main()
