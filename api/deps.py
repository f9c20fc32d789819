"""FastAPI dependencies: database session, Temporal client, the authenticated principal, role checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.auth import Principal, authenticate
from api.errors import Forbidden, Unauthorized, Unavailable
from approvals.policy import PolicyStore
from countersign.settings import Settings


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commits when the route returns, rolls back when it raises."""
    async with request.app.state.sessions() as s, s.begin():
        yield s


def temporal(request: Request) -> Client:
    """The shared Temporal client (connected at start-up, or on first use if Temporal was down)."""
    client: Client | None = request.app.state.temporal
    if client is None:
        raise Unavailable("Temporal is not reachable")
    return client


def settings(request: Request) -> Settings:
    """The app's settings."""
    value: Settings = request.app.state.settings
    return value


def policy(request: Request) -> PolicyStore:
    """The approval policy (reloaded when its file changes)."""
    store: PolicyStore = request.app.state.policy
    store.maybe_reload()
    return store


SessionDep = Annotated[AsyncSession, Depends(session)]
TemporalDep = Annotated[Client, Depends(temporal)]
SettingsDep = Annotated[Settings, Depends(settings)]
PolicyDep = Annotated[PolicyStore, Depends(policy)]


async def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <key>``; 401 when missing, unknown, revoked or expired.

    Authentication commits on its own short transaction (it records the key's last use), so the request's
    transaction never holds a write lock while it waits on Temporal.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <api key>")
    async with request.app.state.sessions() as s, s.begin():
        who = await authenticate(s, token.strip())
    if who is None:
        raise Unauthorized("the API key is unknown, revoked or expired")
    return who


PrincipalDep = Annotated[Principal, Depends(principal)]


def require(*roles: str) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency admitting principals that hold any of ``roles`` (deny by default)."""

    async def check(who: PrincipalDep) -> Principal:
        if not any(who.has(r) for r in roles):
            raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")
        return who

    return check


TriggerDep = Annotated[Principal, Depends(require("trigger", "admin"))]
ReaderDep = Annotated[Principal, Depends(require("trigger", "approver", "auditor", "admin"))]
ApproverDep = Annotated[Principal, Depends(require("approver"))]
ApprovalReaderDep = Annotated[Principal, Depends(require("approver", "auditor", "admin"))]
AuditorDep = Annotated[Principal, Depends(require("auditor", "admin"))]
