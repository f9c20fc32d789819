"""Wire shapes of webhook dispatch, shared by the run workflow, the dispatch workflow and its activities."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel

WebhookEventType = Literal[
    "run.completed", "run.failed", "approval.requested", "approval.decided", "approval.expired", "agent.alert"
]
PATCH_ID = "webhooks-v1"
WEBHOOK_QUEUE_SUFFIX = ".webhooks"


def webhook_task_queue(run_queue: str) -> str:
    """The task queue of the webhook worker serving the runs on ``run_queue``.

    Outbound HTTP to tenant-controlled URLs runs on its own queue (and worker), so a slow receiver never holds
    the agent worker's activity slots and egress can be restricted to the webhook worker alone.
    """
    return run_queue + WEBHOOK_QUEUE_SUFFIX


class WebhookEvent(BaseModel):
    """One event for a tenant's endpoints; ``id`` is the ``webhook-id`` every attempt carries."""

    id: str
    type: WebhookEventType
    tenant_id: str
    run_id: str | None = None
    occurred_at: dt.datetime
    data: dict[str, Any]
