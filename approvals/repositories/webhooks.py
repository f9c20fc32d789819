"""Queries over webhook endpoints, their deliveries and each delivery's attempts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from approvals.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from countersign.db import utcnow
from countersign.repositories.keyset import After, newest_first


async def add(s: AsyncSession, row: WebhookEndpoint | WebhookDelivery | WebhookAttempt) -> None:
    """Insert an endpoint, delivery or attempt and flush."""
    s.add(row)
    await s.flush()


async def get_endpoint(s: AsyncSession, tenant_id: str, endpoint_id: str) -> WebhookEndpoint | None:
    """An active endpoint of the tenant (another tenant's id, or a removed endpoint, reads as missing)."""
    row = await s.get(WebhookEndpoint, endpoint_id)
    if row is None or row.tenant_id != tenant_id or row.removed_at is not None:
        return None
    return row


async def endpoint_of(s: AsyncSession, delivery: WebhookDelivery) -> WebhookEndpoint | None:
    """The endpoint a delivery goes to, removed or not."""
    return await s.get(WebhookEndpoint, delivery.endpoint_id)


async def remove_endpoint(s: AsyncSession, tenant_id: str, endpoint_id: str) -> bool:
    """Stop sending to an endpoint; its deliveries stay for the record. False when there is none."""
    row = await get_endpoint(s, tenant_id, endpoint_id)
    if row is None:
        return False
    row.removed_at = utcnow()
    return True


async def active_endpoints(s: AsyncSession, tenant_id: str) -> list[WebhookEndpoint]:
    """The tenant's active endpoints, oldest first."""
    rows = await s.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.removed_at.is_(None))
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(rows.all())


async def newest_endpoints(
    s: AsyncSession, tenant_id: str, *, after: After | None, limit: int
) -> list[WebhookEndpoint]:
    """Up to ``limit`` of the tenant's active endpoints, newest first, after the row ``after``."""
    q: Any = select(WebhookEndpoint).where(
        WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.removed_at.is_(None)
    )
    return await newest_first(s, q, WebhookEndpoint.created_at, WebhookEndpoint.id, after, limit)


async def get_delivery(
    s: AsyncSession, delivery_id: str, *, for_update: bool = False
) -> WebhookDelivery | None:
    """The delivery of that id, row-locked with ``for_update`` (PostgreSQL)."""
    return await s.get(WebhookDelivery, delivery_id, with_for_update=for_update)


async def delivery_of(s: AsyncSession, endpoint_id: str, message_id: str) -> WebhookDelivery | None:
    """The endpoint's delivery of that message, if it was recorded."""
    row: WebhookDelivery | None = await s.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.message_id == message_id
        )
    )
    return row


async def pending_of(s: AsyncSession, run_id: str, message_ids: Sequence[str]) -> list[str]:
    """The ids of a run's deliveries of these messages that are still pending."""
    if not message_ids:
        return []
    found = await s.scalars(
        select(WebhookDelivery.id).where(
            WebhookDelivery.run_id == run_id,
            WebhookDelivery.message_id.in_(message_ids),
            WebhookDelivery.status == "pending",
        )
    )
    return list(found)


async def newest_deliveries(
    s: AsyncSession, tenant_id: str, endpoint_id: str, *, after: After | None, limit: int
) -> list[WebhookDelivery]:
    """Up to ``limit`` of the endpoint's deliveries, newest first, after the row ``after``."""
    q: Any = select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.tenant_id == tenant_id
    )
    return await newest_first(s, q, WebhookDelivery.created_at, WebhookDelivery.id, after, limit)


async def attempts_of(s: AsyncSession, delivery_ids: Sequence[str]) -> list[WebhookAttempt]:
    """The attempts of these deliveries, in attempt order."""
    if not delivery_ids:
        return []
    rows = await s.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
        .order_by(WebhookAttempt.attempt)
    )
    return list(rows.all())


async def has_attempt(s: AsyncSession, delivery_id: str, attempt: int) -> bool:
    """Whether that attempt of the delivery is recorded."""
    seen = await s.scalar(
        select(WebhookAttempt.id).where(
            WebhookAttempt.delivery_id == delivery_id, WebhookAttempt.attempt == attempt
        )
    )
    return seen is not None
