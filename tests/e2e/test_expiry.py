"""Timers on the time-skipping server: reminder, escalation and expiry of an undecided request."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from approvals.models import ApprovalRequest, AuditEvent
from tests.e2e.conftest import Receiver
from tools.business import Refund

POLICY = """
approvers: [support, finance, logistics]
defaults:
  roles: ["approver:support"]
rules:
  - id: reads
    tool: "get_*"
    outcome: allow
  - id: refunds-timed
    tool: issue_refund
    outcome: require_approval
    roles: ["approver:finance"]
    ttl: 2h
    remind_after: 30m
    escalate_after: 1h
    escalate_to: ["approver:logistics"]
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_undecided_request_is_reminded_escalated_then_expires_and_never_runs(
    skipping_stack: Any, skipping_env: WorkflowEnvironment, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    async with skipping_stack(db_url, policy_path=policy) as stack:
        # The owner's endpoint for alerts.
        hook = await stack.http.post(
            "/v1/webhooks", json={"url": receiver.url, "events": ["agent.alert"]}, headers=stack.auth("admin")
        )
        assert hook.status_code == 201, hook.text
        run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
        [item] = await stack.pending(run["id"])
        assert item["required_roles"] == ["approver:finance"]

        await skipping_env.sleep(timedelta(minutes=65))
        async with stack.sessions() as s:
            row = await s.get(ApprovalRequest, item["id"])
            assert row is not None and row.escalated and row.reminded
            assert row.required_roles == ["approver:finance", "approver:logistics"]

        await skipping_env.sleep(timedelta(minutes=60))
        done = await stack.wait_status(run["id"], {"completed", "failed"})
        assert done["status"] == "completed"
        assert "expired" in done["output"]["reply"]
        async with stack.sessions() as s:
            row = await s.get(ApprovalRequest, item["id"])
            assert row is not None and row.status == "expired"
            types = list(
                await s.scalars(
                    select(AuditEvent.type).where(AuditEvent.run_id == run["id"]).order_by(AuditEvent.seq)
                )
            )
        assert (
            types.index("approval.reminded")
            < types.index("approval.escalated")
            < types.index("approval.expired")
        )
        async with stack.store.sessions() as s:
            assert list(await s.scalars(select(Refund))) == []
        [alert] = [json.loads(r[-1].body) for r in (await receiver.wait_delivered(1)).values()]
        assert alert["type"] == "agent.alert" and alert["data"]["alert"] == "request_expired"
        assert alert["data"]["request_id"] == item["id"] and alert["data"]["agent"] == "support_drafting"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_escalated_request_is_decided_by_the_role_it_was_escalated_to(
    skipping_stack: Any, skipping_env: WorkflowEnvironment, db_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    async with skipping_stack(db_url, policy_path=policy) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
        [item] = await stack.pending(run["id"])
        decide = {"action": "approve", "arguments_hash": item["arguments_hash"]}
        url = f"/v1/approvals/{item['id']}/decisions"
        # Before the escalation the logistics approver may not decide; after it, they may.
        early = await stack.http.post(url, json=decide, headers=stack.auth("logistics"))
        assert early.status_code == 403, early.text
        await skipping_env.sleep(timedelta(minutes=65))
        escalated = (
            await stack.http.get(f"/v1/approvals/{item['id']}", headers=stack.auth("auditor"))
        ).json()
        assert "approver:logistics" in escalated["required_roles"]
        late = await stack.http.post(url, json=decide, headers=stack.auth("logistics"))
        assert late.status_code == 201, late.text
        assert late.json()["request_status"] == "approved"
        done = await stack.wait_status(run["id"], {"completed", "failed"})
        assert done["status"] == "completed"
        async with stack.store.sessions() as s:
            assert [r.amount for r in await s.scalars(select(Refund))] == [250.0]
