"""Webhook endpoints, deliveries and their attempts; Standard Webhooks signing; the outbound URL policy.

A tenant registers endpoints (URL + secret). Each event the workflow emits becomes one delivery per matching
endpoint, whose body is fixed when the delivery is recorded, so every retry sends the same ``webhook-id`` and
the same bytes. Signatures follow the Standard Webhooks scheme: ``v1,<base64 HMAC-SHA256>`` over
``"{webhook-id}.{webhook-timestamp}.{body}"`` with the key in the ``whsec_<base64>`` secret.

Domain only: the queries live in ``approvals.repositories.webhooks``, the HTTP POST in the worker
(``workers/activities/webhooks.py``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from approvals.models import MAX_URL_LENGTH, WebhookDelivery, WebhookEndpoint
from approvals.repositories import webhooks as repository

EVENT_TYPES: Final = (
    "run.completed",
    "run.failed",
    "approval.requested",
    "approval.decided",
    "approval.expired",
    "agent.alert",
)
FORMATS: Final = ("standard", "slack")
SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


# --- signing -------------------------------------------------------------------------------------------


class WebhookVerificationError(ValueError):
    """The signature, timestamp or headers of a received webhook do not check out."""


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as e:
        raise WebhookVerificationError("the secret is not whsec_<base64>") from e


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one attempt."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Check a received webhook as a receiver must; raises ``WebhookVerificationError`` when it fails.

    ``headers`` lookups are lower-case. The timestamp must be within ``tolerance_seconds`` of ``now`` (so a
    captured request cannot be replayed later), and one of the space-separated ``v1`` signatures must match.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    message_id, stamp, given = (
        lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not message_id or not stamp or not given:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError as e:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from e
    if abs(now - timestamp) > tolerance_seconds:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    expected = sign(secret, message_id, timestamp, body).encode()
    for candidate in given.split():
        if candidate.startswith(f"{SIGNATURE_VERSION},") and hmac.compare_digest(
            candidate.encode(), expected
        ):
            return
    raise WebhookVerificationError("no signature matches")


def _left(occurred_at: dt.datetime, expires_at: Any) -> str:
    if not expires_at:
        return "no deadline"
    seconds = int((dt.datetime.fromisoformat(str(expires_at)) - occurred_at).total_seconds())
    hours, rest = divmod(max(seconds, 0), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min"


_ALERTS = {
    "run_failed": "a run failed",
    "budget_exhausted": "a run spent its budget and waits for a person",
    "model_unavailable": "the model is down; a run waits for a person",
    "request_expired": "an approval request expired undecided",
}


def chat_body(event_type: str, occurred_at: dt.datetime, data: dict[str, Any], console_url: str) -> str:
    """A Slack-compatible incoming-webhook message (``text``, mrkdwn) for an event: who must decide what and
    by when, or what went wrong, with a link into the console. Ids, rules and roles only: no arguments, no
    customer data leaves for the chat."""
    base = console_url.rstrip("/")
    agent = data.get("agent", "?")
    if event_type == "approval.requested":
        text = (
            f"*Approval needed*: {agent} wants to run `{data.get('tool')}` (rule `{data.get('rule')}`).\n"
            f"Who decides: {', '.join(data.get('required_roles') or [])}"
            f" (quorum {data.get('quorum', 1)}); time left: {_left(occurred_at, data.get('expires_at'))}.\n"
            f"<{base}/ui/approvals/{data.get('request_id')}|Open it in the inbox>"
        )
    elif event_type == "agent.alert":
        what = _ALERTS.get(str(data.get("alert")), str(data.get("alert")))
        reason = f" ({data['reason']})" if data.get("reason") else ""
        text = f"*{agent}*: {what}{reason}.\n<{base}/ui/runs/{data.get('run_id')}|Open the run>"
    else:
        run = data.get("run_id")
        text = f"*{agent}*: {event_type} ({data.get('status', '')}).\n<{base}/ui/runs/{run}|Open the run>"
    return json.dumps({"text": text}, separators=(",", ":"), sort_keys=True)


def event_body(event_type: str, occurred_at: dt.datetime, data: dict[str, Any]) -> str:
    """The JSON body of an event (Standard Webhooks shape: type, timestamp, data), serialised once."""
    payload = {"type": event_type, "timestamp": occurred_at.astimezone(dt.UTC).isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str)


# --- where webhooks may go -----------------------------------------------------------------------------


class UnsafeUrl(ValueError):
    """A webhook URL the policy refuses; the message says why."""


def check_url_syntax(url: str) -> tuple[str, int]:
    """(host, port) of an acceptable URL: http(s), a host, no credentials; raises ``UnsafeUrl``."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UnsafeUrl(f"not a valid URL ({e})") from e
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("only http and https URLs are allowed")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username or parts.password:
        # Credentials in a URL end up in logs and proxies; receivers authenticate by the signature instead.
        raise UnsafeUrl("credentials in the URL are not allowed")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def is_public_address(address: str) -> bool:
    """Whether an IP address is globally routable (not private, loopback, link-local, reserved...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that are not http(s) or, unless ``allow_private``, that resolve to a non-public address.

    Every address the host resolves to is checked, so a name with one public and one internal record is
    refused. The worker repeats the check before each attempt, because DNS answers can change.
    """
    host, port = check_url_syntax(url)
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise UnsafeUrl(f"the host {host!r} does not resolve") from e
    addresses = {str(info[4][0]) for info in infos}
    if not addresses:
        raise UnsafeUrl(f"the host {host!r} does not resolve")
    blocked = sorted(a for a in addresses if not is_public_address(a))
    if blocked:
        raise UnsafeUrl(
            f"the host {host!r} resolves to a private, loopback or link-local address ({', '.join(blocked)})"
        )


# --- recording -----------------------------------------------------------------------------------------


async def create_endpoint(
    session: AsyncSession,
    *,
    tenant_id: str,
    url: str,
    events: Sequence[str] | None = None,
    description: str | None = None,
    format: str = "standard",
) -> WebhookEndpoint:
    """Record an endpoint with a fresh secret (the caller shows ``row.secret`` once)."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: one of {', '.join(FORMATS)}")
    unknown = sorted(set(events or ()) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event type(s): {', '.join(unknown)}")
    row = WebhookEndpoint(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        url=url,
        secret=new_secret(),
        events=sorted(set(events)) if events else list(EVENT_TYPES),
        description=description,
        format=format,
    )
    await repository.add(session, row)
    return row


async def enqueue(
    session: AsyncSession,
    *,
    message_id: str,
    event_type: str,
    tenant_id: str,
    run_id: str | None,
    occurred_at: dt.datetime,
    data: dict[str, Any],
    console_url: str = "",
) -> list[str]:
    """One delivery per active endpoint of the tenant subscribed to the event; idempotent per message id.
    Chat endpoints get a message linking to the console at ``console_url``.

    Returns the ids of the pending deliveries, including ones an earlier (retried) call recorded.
    """
    endpoints = await repository.active_endpoints(session, tenant_id)
    body = event_body(event_type, occurred_at, data)
    chat = chat_body(event_type, occurred_at, data, console_url)
    ids: list[str] = []
    for endpoint in endpoints:
        if event_type not in endpoint.events:
            continue
        existing = await repository.delivery_of(session, endpoint.id, message_id)
        if existing is None:
            existing = WebhookDelivery(
                id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                endpoint_id=endpoint.id,
                message_id=message_id,
                event_type=event_type,
                run_id=run_id,
                body=chat if endpoint.format == "slack" else body,
                status="pending",
                attempts=0,
            )
            await repository.add(session, existing)
        if existing.status == "pending":
            ids.append(existing.id)
    return ids
