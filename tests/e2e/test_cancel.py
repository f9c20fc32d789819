"""Cancelling a run end to end: the workflow stops, pending approvals are cancelled, nothing runs."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError

from approvals.models import AuditEvent
from tests.conftest import Stack
from tests.e2e.test_gates import decide, refunds


async def _cancelled(stack: Stack, run_id: str) -> None:
    handle = stack.client.get_workflow_handle(f"run-{run_id}")
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED


async def test_cancel_a_paused_run_cancels_its_request_and_never_refunds(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])

    r = await stack.http.post(f"/v1/runs/{run['id']}/cancel", headers=stack.auth("trigger"))
    assert r.status_code == 202, r.text
    assert r.json()["id"] == run["id"]
    await _cancelled(stack, run["id"])

    shown = (await stack.http.get(f"/v1/runs/{run['id']}", headers=stack.auth("trigger"))).json()
    assert shown["status"] == "cancelled" and shown["error"] == {"reason": "cancelled"}
    request = (await stack.http.get(f"/v1/approvals/{item['id']}", headers=stack.auth("auditor"))).json()
    assert request["status"] == "cancelled"
    assert await refunds(stack) == []

    late = await decide(stack, item, "alice")
    assert late.status_code == 409 and late.json()["type"].endswith("/already_decided")
    again = await stack.http.post(f"/v1/runs/{run['id']}/cancel", headers=stack.auth("trigger"))
    assert again.status_code == 409 and again.json()["type"].endswith("/run_finished")
    async with stack.sessions() as s:
        types = list(
            await s.scalars(
                select(AuditEvent.type).where(AuditEvent.run_id == run["id"]).order_by(AuditEvent.seq)
            )
        )
    assert types.index("approval.cancelled") < types.index("run.cancelled") == len(types) - 1


async def test_cancel_right_after_start_ends_cancelled(stack: Stack) -> None:
    # Whether the cancel lands while a model activity runs or once the run is paused, the end is the same.
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    r = await stack.http.post(f"/v1/runs/{run['id']}/cancel", headers=stack.auth("trigger"))
    assert r.status_code == 202, r.text
    await _cancelled(stack, run["id"])
    shown = (await stack.http.get(f"/v1/runs/{run['id']}", headers=stack.auth("auditor"))).json()
    assert shown["status"] == "cancelled"
    pending = (
        await stack.http.get(f"/v1/approvals?status=pending&run_id={run['id']}", headers=stack.auth("alice"))
    ).json()
    assert pending["items"] == []
    assert await refunds(stack) == []


async def test_cancel_is_refused_to_other_roles_and_other_tenants(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    for role in ("auditor", "alice", "admin"):
        r = await stack.http.post(f"/v1/runs/{run['id']}/cancel", headers=stack.auth(role))
        assert r.status_code == 403, (role, r.text)
    done = await stack.result(run["id"])
    assert done["status"] == "completed"
    finished = await stack.http.post(f"/v1/runs/{run['id']}/cancel", headers=stack.auth("trigger"))
    assert finished.status_code == 409
    missing = await stack.http.post("/v1/runs/nope/cancel", headers=stack.auth("trigger"))
    assert missing.status_code == 404 and missing.json()["type"].endswith("/not_found")
