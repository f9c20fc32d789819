"""``/v1/webhooks`` (admin): a tenant's webhook endpoints and their deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import AdminDep, SessionDep, SettingsDep
from api.errors import problems
from api.schemas import Page, WebhookCreate, WebhookCreated, WebhookDeliveryRead, WebhookRead
from api.services import pagination
from api.services import webhooks as service

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=problems(401, 403, 422))


@router.post("", status_code=201, response_model=WebhookCreated, responses=problems(413))
async def create_webhook(
    body: WebhookCreate, who: AdminDep, s: SessionDep, settings: SettingsDep
) -> WebhookCreated:
    """Register an endpoint. The response carries its signing secret, shown this once.

    Deliveries are signed the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``) and retried with exponential backoff for up to a day.
    """
    return await service.create(s, who, body, allow_private=settings.webhook_allow_private)


@router.get("", response_model=Page[WebhookRead])
async def list_webhooks(
    who: AdminDep,
    s: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)] = 50,
) -> Page[WebhookRead]:
    """The tenant's endpoints, newest first."""
    return await service.list_endpoints(s, who, cursor=cursor, limit=limit)


@router.get("/{webhook_id}", response_model=WebhookRead, responses=problems(404))
async def get_webhook(webhook_id: str, who: AdminDep, s: SessionDep) -> WebhookRead:
    """One endpoint (its secret is never shown again)."""
    return await service.get(s, who, webhook_id)


@router.delete("/{webhook_id}", status_code=204, response_class=Response, responses=problems(404))
async def delete_webhook(webhook_id: str, who: AdminDep, s: SessionDep) -> Response:
    """Remove an endpoint: nothing more is sent to it; its past deliveries stay readable."""
    await service.remove(s, who, webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=Page[WebhookDeliveryRead], responses=problems(404))
async def list_webhook_deliveries(
    webhook_id: str,
    who: AdminDep,
    s: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)] = 50,
) -> Page[WebhookDeliveryRead]:
    """The endpoint's deliveries, newest first, with every attempt's status code or error."""
    return await service.deliveries(s, who, webhook_id, cursor=cursor, limit=limit)
