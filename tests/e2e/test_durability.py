"""Durability: a real worker process is SIGKILLed at known points; a new one finishes the run exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from approvals.models import AuditEvent
from tests.conftest import Stack, wait_for_file, worker_process
from tools.business import Effect, Refund

pytestmark = pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

FAST_RETRY = {"COUNTERSIGN_TOOL_TIMEOUT_SECONDS": "3"}


def kill(proc: Any) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


async def executed(stack: Stack, run_id: str) -> list[str]:
    async with stack.sessions() as s:
        rows = await s.scalars(
            select(AuditEvent.data).where(AuditEvent.run_id == run_id, AuditEvent.type == "tool.executed")
        )
        return [str(d["idempotency_key"]) for d in rows]


async def test_worker_killed_mid_run_then_new_worker_completes(
    make_stack: Any, db_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "before_tool"
    async with make_stack(db_url, worker=False) as stack:
        doomed = worker_process(stack, fault=("before_tool", marker), **FAST_RETRY)
        try:
            run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
            await wait_for_file(marker, doomed)
            fresh = worker_process(stack, **FAST_RETRY)  # starts while the stuck attempt times out
            kill(doomed)
            done = await stack.result(run["id"])
        finally:
            for p in (doomed, locals().get("fresh")):
                if p is not None and p.poll() is None:
                    kill(p)
        assert done["status"] == "completed"
        keys = await executed(stack, run["id"])
        assert len(keys) == len(set(keys)) == 3  # get_ticket, get_order, search_policies


async def test_killed_while_paused_then_approved_on_a_new_worker(make_stack: Any, db_url: str) -> None:
    async with make_stack(db_url, worker=False) as stack:
        first = worker_process(stack)
        try:
            run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
            [item] = await stack.pending(run["id"])
            second = worker_process(stack)
            kill(first)
            r = await stack.approve(item)
            assert r.status_code == 201, r.text
            done = await stack.result(run["id"])
        finally:
            for p in (first, locals().get("second")):
                if p is not None and p.poll() is None:
                    kill(p)
        assert done["status"] == "completed"
        async with stack.store.sessions() as s:
            assert await s.scalar(select(func.count()).select_from(Refund)) == 1


async def test_killed_after_the_effect_before_the_activity_completes(
    make_stack: Any, db_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "after_effect"
    async with make_stack(db_url, worker=False) as stack:
        doomed = worker_process(stack, fault=("after_effect", marker), **FAST_RETRY)
        try:
            run = await stack.start(
                "support_drafting", {"ticket_id": "T-1003"}
            )  # 20.00: allowed without approval
            await wait_for_file(marker, doomed)
            fresh = worker_process(stack, **FAST_RETRY)
            kill(doomed)
            async with stack.store.sessions() as s:
                assert (
                    await s.scalar(select(func.count()).select_from(Refund)) == 1
                )  # the effect had committed
            done = await stack.result(run["id"])
        finally:
            for p in (doomed, locals().get("fresh")):
                if p is not None and p.poll() is None:
                    kill(p)
        assert "refunded 20.00" in done["output"]["reply"]
        async with stack.store.sessions() as s:
            assert await s.scalar(select(func.count()).select_from(Refund)) == 1
            assert (
                await s.scalar(select(func.count()).select_from(Effect).where(Effect.tool == "issue_refund"))
                == 1
            )
