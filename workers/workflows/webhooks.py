"""Webhook dispatch: a short child workflow per event hands each delivery to its own retrying workflow.

The run workflow starts the dispatch child (``emit``) and moves on; the child records one delivery per
subscribed endpoint (its body fixed from then on) and starts a ``WebhookDeliveryWorkflow`` per delivery, which
retries the POST with exponential backoff for up to a day. Before closing, the run waits for its dispatch
children (``settle``): they only touch the database, so a receiver that is down never holds the run open,
yet no event is left behind when the run's workflow closes.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from countersign.hashing import canonical_hash
    from workers.contracts import DecisionIn, GatedRequest, StatusUpdate
    from workers.webhook_contracts import PATCH_ID, WebhookEvent, WebhookEventType, webhook_task_queue

DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
)
# A delivery keeps retrying for a day; one attempt is one HTTP request (the worker's own HTTP timeout is
# shorter, so it reports a slow receiver itself).
DELIVERY_WINDOW = timedelta(hours=24)
ATTEMPT_TIMEOUT = timedelta(seconds=150)
DB_ACTIVITY: dict[str, Any] = {"start_to_close_timeout": timedelta(seconds=30)}

Dispatch = ChildWorkflowHandle[Any, None]


@workflow.defn
class WebhookDispatchWorkflow:
    """Record the event's deliveries and start a delivery workflow for each (one activity)."""

    @workflow.run
    async def run(self, event: WebhookEvent) -> None:
        await workflow.execute_activity("webhooks.enqueue", event, **DB_ACTIVITY)


@workflow.defn
class WebhookDeliveryWorkflow:
    """Deliver one event to one endpoint: retried with backoff, then given up after the window."""

    @workflow.run
    async def run(self, delivery_id: str) -> None:
        try:
            await workflow.execute_activity(
                "webhooks.deliver",
                delivery_id,
                start_to_close_timeout=ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=DELIVERY_WINDOW,
                retry_policy=DELIVERY_RETRY,
            )
        except ActivityError:
            await workflow.execute_activity("webhooks.give_up", delivery_id, **DB_ACTIVITY)


async def emit(
    event_type: WebhookEventType, *, tenant_id: str, run_id: str | None, data: dict[str, Any]
) -> Dispatch | None:
    """From a workflow: start the dispatch of one event; returns its handle for ``settle``.

    Guarded by a patch marker: histories recorded before webhooks existed replay without these commands.
    """
    if not workflow.patched(PATCH_ID):
        return None
    made = event(event_type, tenant_id=tenant_id, run_id=run_id, data=data)
    return await workflow.start_child_workflow(
        WebhookDispatchWorkflow.run,
        made,
        id=f"webhook-{made.id}",
        task_queue=webhook_task_queue(workflow.info().task_queue),
        parent_close_policy=ParentClosePolicy.ABANDON,
    )


def event(
    event_type: WebhookEventType, *, tenant_id: str, run_id: str | None, data: dict[str, Any]
) -> WebhookEvent:
    """From a workflow: a webhook event to record with the change it reports (its id is deterministic)."""
    return WebhookEvent(
        id=f"msg_{workflow.uuid4().hex}",
        type=event_type,
        tenant_id=tenant_id,
        run_id=run_id,
        occurred_at=workflow.now(),
        data=data,
    )


async def settle(dispatches: list[Dispatch]) -> None:
    """Wait until every started dispatch has recorded its deliveries (not until they are delivered)."""
    pending = [d for d in dispatches if not d.done()]
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def run_data(u: StatusUpdate) -> dict[str, Any]:
    """The ``data`` of ``run.completed`` / ``run.failed``: ids, status, the output's hash, where to read it.

    Not the output itself: it may hold personal data, and ``GET /v1/runs/{id}`` serves it to those allowed.
    """
    return {
        "run_id": u.run.run_id,
        "agent": u.run.agent,
        "status": u.status,
        "output_hash": canonical_hash(u.output) if u.output is not None else None,
        "links": {"run": f"/v1/runs/{u.run.run_id}"},
        "error": u.error,
        "usage": u.usage.model_dump() if u.usage is not None else None,
    }


def request_data(r: GatedRequest, decision: DecisionIn | None = None) -> dict[str, Any]:
    """The ``data`` of ``approval.*`` events: ids, the rule and the hash of the arguments, not the arguments
    themselves (they may hold personal data; the API serves them to those allowed to see them)."""
    data: dict[str, Any] = {
        "request_id": r.id,
        "run_id": r.run_id,
        "agent": r.agent,
        "tool": r.tool,
        "arguments_hash": r.arguments_hash,
        "rule": r.rule,
        "policy_version": r.policy_version,
        "required_roles": r.roles,
        "quorum": r.quorum,
        "status": r.status,
        "expires_at": r.expires_at.isoformat() if r.expires_at else None,
    }
    if decision is not None:
        data["decision"] = {
            "id": decision.decision_id,
            "action": decision.action,
            "principal_id": decision.principal_id,
        }
    return data
