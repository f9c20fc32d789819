"""Registering, listing and removing a tenant's webhook endpoints; reading their deliveries."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.errors import Invalid, NotFound
from api.schemas import (
    Page,
    WebhookAttemptRead,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryRead,
    WebhookRead,
)
from api.services import pagination
from approvals import webhooks
from approvals.models import WebhookEndpoint
from approvals.repositories import webhooks as repository


def _read(row: WebhookEndpoint) -> WebhookRead:
    return WebhookRead(
        id=row.id,
        url=row.url,
        events=row.events,
        description=row.description,
        format=row.format,
        created_at=row.created_at,
    )


async def create(
    s: AsyncSession, who: Principal, body: WebhookCreate, *, allow_private: bool
) -> WebhookCreated:
    """Check the URL against the outbound policy, then record the endpoint with a fresh secret."""
    try:
        await webhooks.check_url(body.url, allow_private=allow_private)
    except webhooks.UnsafeUrl as e:
        raise Invalid(f"url: {e}", errors=[{"field": "url", "message": str(e)}]) from e
    row = await webhooks.create_endpoint(
        s,
        tenant_id=who.tenant_id,
        url=body.url,
        events=body.events,
        description=body.description,
        format=body.format,
    )
    return WebhookCreated(**_read(row).model_dump(), secret=row.secret)


async def _get(s: AsyncSession, who: Principal, webhook_id: str) -> WebhookEndpoint:
    row = await repository.get_endpoint(s, who.tenant_id, webhook_id)
    if row is None:
        raise NotFound(f"webhook {webhook_id} not found")
    return row


async def get(s: AsyncSession, who: Principal, webhook_id: str) -> WebhookRead:
    """One endpoint of the tenant (never its secret)."""
    return _read(await _get(s, who, webhook_id))


async def list_endpoints(
    s: AsyncSession, who: Principal, *, cursor: str | None, limit: int
) -> Page[WebhookRead]:
    """The tenant's active endpoints, newest first."""
    found = await repository.newest_endpoints(
        s, who.tenant_id, after=pagination.decode(cursor), limit=limit + 1
    )
    rows, nxt = pagination.page(found, limit)
    return Page[WebhookRead](items=[_read(r) for r in rows], next_cursor=nxt)


async def remove(s: AsyncSession, who: Principal, webhook_id: str) -> None:
    """Stop sending to the endpoint; pending retries end at their next attempt."""
    if not await repository.remove_endpoint(s, who.tenant_id, webhook_id):
        raise NotFound(f"webhook {webhook_id} not found")


async def deliveries(
    s: AsyncSession, who: Principal, webhook_id: str, *, cursor: str | None, limit: int
) -> Page[WebhookDeliveryRead]:
    """The endpoint's deliveries, newest first, each with its attempts."""
    endpoint = await _get(s, who, webhook_id)
    found = await repository.newest_deliveries(
        s, who.tenant_id, endpoint.id, after=pagination.decode(cursor), limit=limit + 1
    )
    rows, nxt = pagination.page(found, limit)
    attempts: dict[str, list[WebhookAttemptRead]] = {r.id: [] for r in rows}
    for a in await repository.attempts_of(s, list(attempts)):
        attempts[a.delivery_id].append(
            WebhookAttemptRead(
                attempt=a.attempt,
                started_at=a.started_at,
                duration_ms=a.duration_ms,
                status_code=a.status_code,
                error=a.error,
            )
        )
    items = [
        WebhookDeliveryRead(
            id=r.id,
            message_id=r.message_id,
            event_type=r.event_type,
            run_id=r.run_id,
            status=r.status,
            attempts=attempts[r.id],
            created_at=r.created_at,
            delivered_at=r.delivered_at,
        )
        for r in rows
    ]
    return Page[WebhookDeliveryRead](items=items, next_cursor=nxt)
