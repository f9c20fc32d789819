"""Replay: recorded histories must replay on today's workflow code (a topology change breaks in-flight runs).

Histories under ``histories/`` were recorded from real runs (``COUNTERSIGN_RECORD_HISTORIES=1`` writes one);
if a change to the workflow or a graph makes one fail, guard it with ``workflow.patched()``; never re-record.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from tests.conftest import Stack
from workers.client import data_converter
from workers.worker import langgraph_plugin
from workers.workflows.run import AgentRunWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORD = os.environ.get("COUNTERSIGN_RECORD_HISTORIES") == "1"


def replayer(stack: Stack) -> Replayer:
    plugin = langgraph_plugin(
        stack.settings, stack.sessions, stack.store, task_queue=stack.settings.task_queue
    )
    # The SDK's sandbox, which workers run without by default: a call in the workflow code that the sandbox
    # forbids (clock, I/O, a non-deterministic import) fails this replay.
    return Replayer(
        workflow_runner=SandboxedWorkflowRunner(),
        workflows=[AgentRunWorkflow],
        plugins=[plugin],
        data_converter=data_converter,
        interceptors=[TracingInterceptor()],
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_fresh_and_recorded_histories_replay(stack: Stack, db_url: str) -> None:
    run, _ = await refund_approved(stack)
    fresh = await stack.client.get_workflow_handle(f"run-{run['id']}").fetch_history()
    histories: list[WorkflowHistory] = [fresh]
    for path in sorted(HISTORIES.glob("*.json")):
        data: dict[str, Any] = json.loads(await asyncio.to_thread(path.read_text))
        histories.append(WorkflowHistory.from_json(data["workflow_id"], data["history"]))
    # Building the plugin loads the policy file: off the loop, which the worker and the API share here.
    replay = await asyncio.to_thread(replayer, stack)
    for history in histories:
        await replay.replay_workflow(history)  # raises on any non-determinism
    if RECORD:
        HISTORIES.mkdir(exist_ok=True)
        # One file per workflow version; earlier ones stay (runs of every version must keep replaying).
        out = HISTORIES / "support_drafting_refund_approved_no_task_cache.json"
        out.write_text(json.dumps({"workflow_id": fresh.workflow_id, "history": json.loads(fresh.to_json())}))
    assert len(histories) >= 5 or RECORD, "recorded histories missing under tests/workers/histories"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_gated_run_completes_on_a_sandboxed_worker(make_stack: Any, db_url: str) -> None:
    # Workers run workflows outside the SDK's sandbox by default; the code must run in it all the same.
    async with make_stack(db_url, workflow_sandbox=True) as stack:
        _, done = await refund_approved(stack)
        assert done["status"] == "completed" and "refunded 250.00" in done["output"]["reply"]


async def refund_approved(stack: Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    """A T-1002 run whose refund is approved, and the run once it ended."""
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    r = await stack.approve(item)
    assert r.status_code == 201, r.text
    return run, await stack.result(run["id"])
