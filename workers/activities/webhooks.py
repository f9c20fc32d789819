"""Webhook activities: record an event's deliveries, POST one delivery (one attempt), give up on one."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from approvals import webhooks
from approvals.models import WebhookAttempt
from approvals.repositories import webhooks as repository
from countersign.db import utcnow
from workers.webhook_contracts import WebhookEvent
from workers.workflows.webhooks import WebhookDeliveryWorkflow

log = logging.getLogger("countersign.webhooks")
USER_AGENT = "Countersign-Webhooks/1"


async def record_deliveries(
    session: AsyncSession, events: Sequence[WebhookEvent], console_url: str = ""
) -> list[str]:
    """The deliveries of webhook events, recorded in the caller's transaction (idempotent per message id);
    chat messages link to the console at ``console_url``."""
    ids: list[str] = []
    for event in events:
        ids += await webhooks.enqueue(
            session,
            message_id=event.id,
            event_type=event.type,
            tenant_id=event.tenant_id,
            run_id=event.run_id,
            occurred_at=event.occurred_at,
            data=event.data,
            console_url=console_url,
        )
    return ids


async def start_deliveries(client: Client, queue: str, delivery_ids: list[str]) -> None:
    """A delivery workflow per recorded delivery; safe to repeat (workflow ids are the delivery ids)."""
    for delivery_id in delivery_ids:
        try:
            await client.start_workflow(
                WebhookDeliveryWorkflow.run,
                delivery_id,
                id=f"webhook-delivery-{delivery_id}",
                task_queue=queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except WorkflowAlreadyStartedError:
            pass  # an earlier attempt started it and it has already finished


class WebhookActivities:
    """Delivery side of webhooks; bound to the database and one shared HTTP client."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        *,
        allow_private: bool,
        console_url: str = "",
    ) -> None:
        self.sessions, self.http, self.allow_private = sessions, http, allow_private
        self.console_url = console_url

    @activity.defn(name="webhooks.enqueue")
    async def enqueue(self, event: WebhookEvent) -> list[str]:
        """One delivery row per subscribed endpoint, body fixed now, and a delivery workflow for each.

        Retries are safe: rows are unique per (endpoint, message id) and workflow ids per delivery.
        """
        async with self.sessions() as session, session.begin():
            ids = await record_deliveries(session, [event], self.console_url)
        await start_deliveries(activity.client(), activity.info().task_queue, ids)
        return ids

    @activity.defn(name="webhooks.deliver")
    async def deliver(self, delivery_id: str) -> None:
        """One attempt: sign the stored body with a fresh timestamp and POST it; a non-2xx answer raises,
        so Temporal retries with backoff. Each attempt is recorded."""
        attempt = activity.info().attempt
        async with self.sessions() as session:
            delivery = await repository.get_delivery(session, delivery_id)
            endpoint = await repository.endpoint_of(session, delivery) if delivery else None
        if delivery is None or endpoint is None or delivery.status != "pending":
            return
        if endpoint.removed_at is not None:
            await self._finish(delivery_id, "cancelled", None, "the endpoint was removed")
            return
        host = urlsplit(endpoint.url).hostname or "?"
        started, clock = utcnow(), time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            # Checked again at each attempt: the name may resolve elsewhere than when it was registered.
            await webhooks.check_url(endpoint.url, allow_private=self.allow_private)
            body = delivery.body.encode()
            headers = {
                **webhooks.signed_headers(endpoint.secret, delivery.message_id, int(time.time()), body),
                "content-type": "application/json",
                "user-agent": USER_AGENT,
            }
            response = await self.http.post(endpoint.url, content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except webhooks.UnsafeUrl as e:
            error = f"refused: {e}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:500]
        duration = int((time.monotonic() - clock) * 1000)
        refused = error is not None and error.startswith("refused:")
        final = "delivered" if error is None else "failed" if refused else None
        await self._record(delivery_id, attempt, started, duration, status_code, error, final)
        # Ids and host only: URLs may carry tokens and bodies may carry personal data.
        log.info(
            "webhook.attempt delivery=%s endpoint=%s host=%s attempt=%d status=%s",
            delivery_id,
            endpoint.id,
            host,
            attempt,
            status_code if status_code is not None else error,
        )
        if error is None:
            return
        if refused:
            raise ApplicationError(error, type="webhook_refused", non_retryable=True)
        raise ApplicationError(error, type="webhook_attempt_failed")

    @activity.defn(name="webhooks.give_up")
    async def give_up(self, delivery_id: str) -> None:
        """Mark a delivery failed once its retry window is over."""
        await self._finish(delivery_id, "failed", None, None)

    async def _record(
        self,
        delivery_id: str,
        attempt: int,
        started: dt.datetime,
        duration_ms: int,
        status_code: int | None,
        error: str | None,
        final: str | None,
    ) -> None:
        """The attempt row and the delivery's state after it, in one transaction."""
        async with self.sessions() as session, session.begin():
            delivery = await repository.get_delivery(session, delivery_id, for_update=True)
            if delivery is None:
                return
            if not await repository.has_attempt(session, delivery_id, attempt):
                await repository.add(
                    session,
                    WebhookAttempt(
                        id=str(uuid.uuid4()),
                        delivery_id=delivery_id,
                        attempt=attempt,
                        started_at=started,
                        duration_ms=duration_ms,
                        status_code=status_code,
                        error=error,
                    ),
                )
                delivery.attempts += 1
            delivery.last_status_code, delivery.last_error = status_code, error
            if final is not None and delivery.status == "pending":
                delivery.status = final
                if final == "delivered":
                    delivery.delivered_at = utcnow()

    async def _finish(
        self, delivery_id: str, status: str, status_code: int | None, error: str | None
    ) -> None:
        async with self.sessions() as session, session.begin():
            delivery = await repository.get_delivery(session, delivery_id, for_update=True)
            if delivery is None or delivery.status != "pending":
                return
            delivery.status = status
            if status == "delivered":
                delivery.delivered_at = utcnow()
            if error is not None:
                delivery.last_error = error
            if status_code is not None:
                delivery.last_status_code = status_code
