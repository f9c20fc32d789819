"""The baseline: a bare Temporal workflow doing the same number of round trips with no-op activities.

Run as a process of its own (``python -m bench.bare --address ... --task-queue ...``), like Countersign's
worker, so both sides pay for a process and a connection of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

STEP = timedelta(seconds=30)


class BareInput(BaseModel):
    """``steps`` activities, then (when ``wait``) an update, then ``after`` more activities."""

    steps: int
    wait: bool = False
    after: int = 0


@activity.defn(name="bare.noop")
async def noop() -> None:
    """Does nothing: what is measured is the round trip through the server."""


@workflow.defn
class BareWorkflow:
    """The fewest round trips a run with the same model calls and tool executions can take."""

    def __init__(self) -> None:
        self._decided = False

    @workflow.run
    async def run(self, inp: BareInput) -> None:
        for _ in range(inp.steps):
            await workflow.execute_activity(noop, start_to_close_timeout=STEP)
        if inp.wait:
            await workflow.wait_condition(lambda: self._decided)
            for _ in range(inp.after):
                await workflow.execute_activity(noop, start_to_close_timeout=STEP)

    @workflow.update
    async def decide(self) -> None:
        """A person's decision, with nothing recorded."""
        self._decided = True


async def serve(address: str, task_queue: str, ready: Path) -> None:
    """Poll until SIGTERM; touch ``ready`` once polling."""
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWorkflow],
        activities=[noop],
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        ready.write_text("polling")
        await stop.wait()


def main() -> None:
    """Entry point of the baseline worker process."""
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--task-queue", required=True)
    p.add_argument("--ready", required=True, type=Path)
    a = p.parse_args()
    asyncio.run(serve(a.address, a.task_queue, a.ready))


if __name__ == "__main__":
    main()
