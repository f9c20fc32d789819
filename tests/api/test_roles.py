"""The route × role matrix, built from the app's own routes: each cell is allowed, 403, or 404 across tenants.

A route added to the app without a row here fails this test, so the role model is decided for every route.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import create_key, ensure_tenant
from approvals import audit, webhooks
from approvals.models import ApprovalRequest
from countersign.models import Run
from tests.conftest import Stack

ROLES: dict[str, list[str]] = {
    "trigger": ["trigger"],
    "approver": ["approver:finance"],
    "auditor": ["auditor"],
    "admin": ["admin"],
    "none": [],  # a key (or a person's token) naming no known role gets nothing: deny by default
}
READERS = {"trigger", "approver", "auditor"}
PUBLIC = {"public"}

# (method, path) → roles allowed. Everything else is refused with 403 (401 without credentials).
MATRIX: dict[tuple[str, str], set[str]] = {
    ("POST", "/v1/runs"): {"trigger"},
    ("GET", "/v1/runs"): READERS,
    ("GET", "/v1/runs/{run_id}"): READERS,
    ("POST", "/v1/runs/{run_id}/cancel"): {"trigger"},
    ("GET", "/v1/runs/{run_id}/events"): READERS,
    ("GET", "/v1/runs/{run_id}/trace"): READERS,
    ("GET", "/v1/audit/events"): {"auditor"},
    ("GET", "/v1/approvals"): {"approver", "auditor"},
    ("GET", "/v1/approvals/{request_id}"): {"approver", "auditor"},
    ("POST", "/v1/approvals/{request_id}/decisions"): {"approver"},
    ("GET", "/v1/agents"): {"trigger", "approver", "auditor", "admin"},
    ("POST", "/v1/webhooks"): {"admin"},
    ("GET", "/v1/webhooks"): {"admin"},
    ("GET", "/v1/webhooks/{webhook_id}"): {"admin"},
    ("DELETE", "/v1/webhooks/{webhook_id}"): {"admin"},
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): {"admin"},
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/v1/healthz"): PUBLIC,
    ("GET", "/v1/readyz"): PUBLIC,
}

# What an allowed call answers on the seeded data: the own run is finished, so cancelling it is a 409, and
# the decision carries a stale hash, so it is a 409 after every authorisation check has passed.
ALLOWED_STATUS: dict[tuple[str, str], int] = {
    ("POST", "/v1/runs"): 201,
    ("POST", "/v1/runs/{run_id}/cancel"): 409,
    ("POST", "/v1/approvals/{request_id}/decisions"): 409,
    ("POST", "/v1/webhooks"): 201,
    ("DELETE", "/v1/webhooks/{webhook_id}"): 204,
}

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/runs"): {"agent": "support_drafting", "input": {"ticket_id": "T-1001"}},
    ("POST", "/v1/approvals/{request_id}/decisions"): {"action": "approve", "arguments_hash": "stale"},
    ("POST", "/v1/webhooks"): {"url": "https://hooks.example.com/countersign"},
}


@dataclass
class Tenant:
    """One tenant's keys by role and the ids of its seeded records."""

    name: str
    keys: dict[str, str]
    ids: dict[str, str]


async def seed_tenant(sessions: async_sessionmaker[AsyncSession], name: str) -> Tenant:
    """A tenant with a key per role, a finished run, a pending approval on it, a ledger event, a webhook."""
    now = dt.datetime.now(dt.UTC)
    run_id, request_id = str(uuid.uuid4()), str(uuid.uuid4())
    keys: dict[str, str] = {}
    async with sessions() as s, s.begin():
        await ensure_tenant(s, name)
        for role, roles in ROLES.items():
            _, keys[role] = await create_key(s, tenant_id=name, name=f"{name} {role}", roles=roles)
        s.add(
            Run(
                id=run_id,
                tenant_id=name,
                agent="support_drafting",
                status="completed",
                input={"ticket_id": "T-1002"},
                output={"reply": "done"},
                requested_by="key:someone-else",
                request_hash="",
                created_at=now,
                updated_at=now,
            )
        )
        await s.flush()
        s.add(
            ApprovalRequest(
                id=request_id,
                tenant_id=name,
                run_id=run_id,
                agent="support_drafting",
                tool="issue_refund",
                tool_call_id="call_1",
                arguments={"order_id": "O-5002", "amount": 250.0, "reason": "damaged"},
                arguments_hash="0" * 64,
                rule="refund-needs-finance",
                policy_version="test",
                required_roles=["approver:finance"],
                quorum=1,
                status="pending",
                requested_by="key:someone-else",
                created_at=now,
            )
        )
        await audit.append(
            s,
            audit.NewEvent(
                id=f"{run_id}:seeded",
                type="run.completed",
                actor="agent:support_drafting",
                data={"status": "completed"},
                tenant_id=name,
                run_id=run_id,
            ),
        )
        hook = await webhooks.create_endpoint(s, tenant_id=name, url=f"https://{name}.example.com/hooks")
    return Tenant(name, keys, {"run_id": run_id, "request_id": request_id, "webhook_id": hook.id})


async def _fresh_webhook(sessions: async_sessionmaker[AsyncSession], tenant: str) -> str:
    async with sessions() as s, s.begin():
        return (await webhooks.create_endpoint(s, tenant_id=tenant, url="https://fresh.example.com/x")).id


def _routes(stack: Stack) -> list[tuple[str, str]]:
    """Every (method, path) of the JSON API, from the app's own routes (included routers flattened); the
    web console's pages under /ui have their own matrix (tests/api/test_console.py)."""
    assert stack.app is not None
    found = sorted(
        (method, str(ctx.path))
        for ctx in iter_route_contexts(stack.app.routes)
        if isinstance(ctx.original_route, APIRoute) and not str(ctx.path).startswith("/ui")
        for method in ctx.original_route.methods or ()
    )
    unknown = [r for r in found if r not in MATRIX]
    assert not unknown, f"routes without a row in the role matrix: {unknown}"
    return found


async def _call(
    stack: Stack, method: str, path: str, ids: dict[str, str], key: str | None
) -> tuple[int, str]:
    url = path.format(**{k: v for k, v in ids.items() if "{" + k + "}" in path})
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = await stack.http.request(method, url, json=BODIES.get((method, path)), headers=headers)
    return r.status_code, r.text


@pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_every_route_for_every_role(make_stack: Any, db_url: str) -> None:
    async with make_stack(db_url, worker=False) as stack:
        acme, globex = (
            await seed_tenant(stack.sessions, "acme-matrix"),
            await seed_tenant(stack.sessions, "globex-matrix"),
        )
        cells = 0
        for method, path in _routes(stack):
            allowed = MATRIX[(method, path)]
            if allowed == PUBLIC:
                status, text = await _call(stack, method, path, acme.ids, None)
                assert status in (200, 503), (method, path, text)
                cells += 1
                continue
            status, text = await _call(stack, method, path, acme.ids, None)
            assert status == 401, (method, path, "no credentials", text)
            for role in ROLES:
                ids = dict(acme.ids)
                if method == "DELETE" and role in allowed:
                    ids["webhook_id"] = await _fresh_webhook(stack.sessions, acme.name)
                status, text = await _call(stack, method, path, ids, acme.keys[role])
                if role not in allowed:
                    assert status == 403, (method, path, role, status, text)
                    assert "/forbidden" in text
                    cells += 1
                    continue
                expected = ALLOWED_STATUS.get((method, path), 200)
                assert status == expected, (method, path, role, status, text)
                # Across tenants: no answer shows another tenant's records, and its ids are unknown (404).
                for value in globex.ids.values():
                    assert value not in text, (method, path, role, "shows another tenant's record")
                if "{" in path:
                    status, text = await _call(stack, method, path, globex.ids, acme.keys[role])
                    assert status == 404, (method, path, role, "cross-tenant", status, text)
                    assert "/not_found" in text
                cells += 1
        routes = _routes(stack)
        assert cells == sum(1 if MATRIX[r] == PUBLIC else len(ROLES) for r in routes)
        assert len(routes) >= 16  # runs, approvals, webhooks, agents, health
