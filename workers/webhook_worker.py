"""The webhook worker: the dispatch workflow and the delivery activities, on the runs' webhook task queue.

It is separate from the agent worker so outbound HTTP to tenant-controlled URLs can be scaled, isolated and
firewalled on its own; ``countersign worker`` runs both in one process by default.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from countersign.settings import Settings
from workers.activities.webhooks import WebhookActivities
from workers.client import BUILD_ID
from workers.webhook_contracts import webhook_task_queue
from workers.workflows.webhooks import WebhookDeliveryWorkflow, WebhookDispatchWorkflow

log = logging.getLogger("countersign.worker")


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The delivery client: no redirects (a redirect could lead into the private network), no proxies or
    credentials from the environment, the configured timeout."""
    return httpx.AsyncClient(
        timeout=settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False
    )


def build_webhook_worker(
    client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    *,
    task_queue: str | None = None,
) -> Worker:
    """A worker for the webhook queue of ``task_queue`` (the runs' queue; the configured one by default)."""
    activities = WebhookActivities(
        sessions,
        http,
        allow_private=settings.webhook_allow_private,
        console_url=settings.resolved_public_url(),
    )
    return Worker(
        client,
        task_queue=webhook_task_queue(task_queue or settings.task_queue),
        workflows=[WebhookDispatchWorkflow, WebhookDeliveryWorkflow],
        activities=[activities.enqueue, activities.deliver, activities.give_up],
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
        build_id=BUILD_ID,
    )
