"""A model step's retry budget counts model errors only: worker crashes during the step never use it up."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from sqlalchemy import select

from agents.catalog import AGENTS
from agents.playbook import call
from agents.scripted import ScriptedChatModel
from approvals.models import AuditEvent
from tests.conftest import wait_for_file, worker_process

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

FAST = {"COUNTERSIGN_ACTIVITY_HEARTBEAT_SECONDS": "1"}


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


async def test_three_worker_crashes_in_one_model_step_do_not_fail_the_run(
    make_stack: Any, db_url: str, tmp_path: Path
) -> None:
    """Before heartbeats, each crash used one of the step's 3 attempts: the third failed the run."""
    procs: list[subprocess.Popen[bytes]] = []
    async with make_stack(db_url, worker=False) as stack:
        try:
            doomed = worker_process(stack, fault=("in_model", tmp_path / "m0"), **FAST)
            procs.append(doomed)
            run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
            for n in range(1, 4):
                await wait_for_file(tmp_path / f"m{n - 1}", doomed)
                # The next worker hangs at the same point too, until the third crash; then a healthy one.
                nxt = worker_process(stack, fault=("in_model", tmp_path / f"m{n}") if n < 3 else None, **FAST)
                procs.append(nxt)
                kill(doomed)
                doomed = nxt
            done = await stack.result(run["id"])
        finally:
            for p in procs:
                if p.poll() is None:
                    kill(p)
        assert done["status"] == "completed", done
        assert [(tmp_path / f"m{n}").exists() for n in range(4)] == [True, True, True, False]


async def test_model_errors_hand_the_run_to_a_person_after_the_configured_attempts(
    make_stack: Any, db_url: str
) -> None:
    calls: list[int] = []

    def down(messages: list[BaseMessage]) -> AIMessage:
        calls.append(len(messages))
        raise RuntimeError("provider answered 503")

    model_for = lambda spec: ScriptedChatModel(playbook=down)  # noqa: E731
    async with make_stack(
        db_url, model_for=model_for, activity_heartbeat_seconds=1, model_max_attempts=2
    ) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        [item] = await stack.pending(run["id"])
        # The run waits for the agent owner's people with what it had and why it stopped, never `failed`.
        assert item["tool"] == "escalate_to_person" and item["required_roles"] == ["approver:support"]
        assert item["arguments"]["reason"] == "model_unavailable"
        assert (
            "the model failed 2 times" in item["arguments"]["errors"] and "503" in item["arguments"]["errors"]
        )
        waiting = (await stack.http.get(f"/v1/runs/{run['id']}", headers=stack.auth("trigger"))).json()
        assert waiting["status"] == "awaiting_approval"
        answer = {"action": "respond", "arguments_hash": item["arguments_hash"], "message": "Arrives Friday."}
        r = await stack.http.post(
            f"/v1/approvals/{item['id']}/decisions", json=answer, headers=stack.auth("alice")
        )
        assert r.status_code == 201, r.text
        done = await stack.result(run["id"])
    assert done["status"] == "completed"
    assert done["output"]["taken_over"] is True and done["output"]["answer"] == "Arrives Friday."
    assert len(calls) == 2


@pytest.fixture
def fails_when_model_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """support_drafting fails its run when its model stays down (instead of handing it to a person)."""
    monkeypatch.setitem(
        AGENTS, "support_drafting", replace(AGENTS["support_drafting"], on_model_failure="fail")
    )


async def run_to_the_end(
    make_stack: Any, db_url: str, playbook: Callable[[list[BaseMessage]], AIMessage]
) -> tuple[dict[str, Any], list[str]]:
    """A T-1001 run whose model follows ``playbook`` (2 attempts a step): its end and its ledger's types."""
    model_for = lambda spec: ScriptedChatModel(playbook=playbook)  # noqa: E731
    async with make_stack(
        db_url, model_for=model_for, activity_heartbeat_seconds=1, model_max_attempts=2
    ) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        done = await stack.wait_status(run["id"], {"failed", "completed"})
        async with stack.sessions() as s:
            query = select(AuditEvent.type).where(AuditEvent.run_id == run["id"]).order_by(AuditEvent.seq)
            return done, list(await s.scalars(query))


@pytest.mark.usefixtures("fails_when_model_is_down")
async def test_an_agent_may_choose_to_fail_when_its_model_is_down(make_stack: Any, db_url: str) -> None:
    def down(messages: list[BaseMessage]) -> AIMessage:
        raise RuntimeError("provider answered 503")

    done, _ = await run_to_the_end(make_stack, db_url, down)
    assert done["status"] == "failed"
    assert done["error"]["reason"] == "step_failed"
    assert "the model failed 2 times" in done["error"]["message"] and "503" in done["error"]["message"]


@pytest.mark.usefixtures("fails_when_model_is_down")
async def test_calls_that_ran_stay_on_record_once_when_the_next_model_turn_fails_for_good(
    make_stack: Any, db_url: str
) -> None:
    """A turn's calls and the model's next turn share one activity and one ledger write: when the model
    fails, the calls that ran are still recorded, once, though each attempt ran them."""
    turns: list[int] = []

    def read_then_fail(messages: list[BaseMessage]) -> AIMessage:
        turns.append(len(messages))
        if not any(isinstance(m, ToolMessage) for m in messages):
            return call(messages, "get_ticket", {"ticket_id": "T-1001"})
        raise RuntimeError("provider answered 503")

    done, types = await run_to_the_end(make_stack, db_url, read_then_fail)
    assert done["status"] == "failed" and "503" in done["error"]["message"]
    # The second attempt ran the call again before asking the model.
    assert turns == [turns[0], turns[0] + 2, turns[0] + 2]
    assert types.count("tool.executed") == 1
    assert types.index("tool.executed") < types.index("run.failed")
