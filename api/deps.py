"""FastAPI dependencies: database session, Temporal client, the authenticated principal, role checks."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.auth import (
    JwtVerifier,
    Principal,
    TokenRejected,
    looks_like_jwt,
    principal_of,
    use_is_stale,
    valid_key,
)
from api.errors import Forbidden, RateLimited, Unauthorized, Unavailable
from api.ratelimit import TokenBucket
from approvals.policy import PolicyStore
from countersign.db import utcnow
from countersign.repositories import keys
from countersign.settings import Settings

log = logging.getLogger(__name__)


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session: what the route writes commits when it returns and rolls back when it raises.

    Services commit early before they call Temporal, so no transaction (and on SQLite, no write lock) is
    held across an RPC; a later statement starts a new transaction. On SQLite a process has one connection,
    which this session holds from its first statement (for a read, the key check) to its end: a route must
    not open a session of its own meanwhile, it would wait for that connection.
    """
    factory = request.app.state.read_sessions if _reads_only(request) else request.app.state.sessions
    async with factory() as s:
        try:
            yield s
        except BaseException:
            await s.rollback()
            raise
        await s.commit()


def _reads_only(request: Request) -> bool:
    # GET and HEAD never write: their sessions take no write lock on SQLite.
    return request.method in ("GET", "HEAD")


# Dependencies are ``async def`` even when they do not await: FastAPI runs a plain ``def`` dependency in its
# thread pool, a hand-over to a thread and back for every request.


async def temporal(request: Request) -> Client:
    """The shared Temporal client (connected at start-up, or on first use if Temporal was down)."""
    client: Client | None = request.app.state.temporal
    if client is None:
        raise Unavailable("Temporal is not reachable")
    return client


async def settings(request: Request) -> Settings:
    """The app's settings."""
    value: Settings = request.app.state.settings
    return value


async def policy(request: Request) -> PolicyStore:
    """The approval policy (reloaded when its file changes; the check and a reload run off the loop)."""
    store: PolicyStore = request.app.state.policy
    await asyncio.to_thread(store.maybe_reload)
    return store


# Ended (committed) when the route function returns, before the response is sent: a commit that fails must
# fail the request, not follow a 2xx the client already has. A streamed response does not hold it open.
SessionDep = Annotated[AsyncSession, Depends(session, scope="function")]
TemporalDep = Annotated[Client, Depends(temporal)]
SettingsDep = Annotated[Settings, Depends(settings)]
PolicyDep = Annotated[PolicyStore, Depends(policy)]


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key (`cs_...`) for client systems, or an OIDC access token (JWT) for people.",
)


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    s: SessionDep,
    after_response: BackgroundTasks,
) -> Principal:
    """The caller, from ``Authorization: Bearer <key or JWT>``; 401 when missing, unknown, revoked, expired.

    Tokens shaped like JWTs (three dot-separated parts) are verified as OIDC tokens, everything else as an API
    key. A key is looked up in the request's own session when the request only reads (GET, HEAD), and on a
    short read transaction of its own otherwise, so a writing request's transaction (and on SQLite its write
    lock) starts with its first write, never while it waits on Temporal.
    """
    token = credentials.credentials.strip() if credentials else ""
    if not token:
        raise Unauthorized("send Authorization: Bearer <api key or token>")
    if looks_like_jwt(token):
        verifier: JwtVerifier = request.app.state.jwt
        try:
            async with request.app.state.sessions() as s:
                return await verifier.authenticate(s, token)
        except TokenRejected as e:
            raise Unauthorized(str(e)) from e
    if _reads_only(request):
        row = await valid_key(s, token)
    else:
        async with request.app.state.read_sessions() as r, r.begin():
            row = await valid_key(r, token)
    if row is None:
        raise Unauthorized("the API key is unknown, revoked or expired")
    if use_is_stale(row):
        # Kept to the minute, once a minute at most, after the response: on a write transaction of its own,
        # which must not wait for the connection the request's session holds.
        after_response.add_task(_record_use, request.app.state.sessions, row.id, row.prefix)
    return principal_of(row)


async def _record_use(sessions: async_sessionmaker[AsyncSession], key_id: str, prefix: str) -> None:
    try:
        async with sessions() as w, w.begin():
            await keys.touch(w, key_id, utcnow())
    except DBAPIError:
        log.warning("could not record the last use of key %s", prefix)


PrincipalDep = Annotated[Principal, Depends(principal)]


def require(*roles: str) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency admitting principals that hold any of ``roles`` (deny by default)."""

    async def check(who: PrincipalDep) -> Principal:
        if not any(who.has(r) for r in roles):
            raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")
        return who

    return check


# The role model: trigger starts runs (within its key's agent allow-list), approver:<group> decides,
# auditor reads runs, approvals, traces and the ledger, admin manages keys, policies and webhooks.
# A role grants nothing beyond its line; keys and people are checked the same way.
TriggerDep = Annotated[Principal, Depends(require("trigger"))]
ReaderDep = Annotated[Principal, Depends(require("trigger", "approver", "auditor"))]
ApproverDep = Annotated[Principal, Depends(require("approver"))]
ApprovalReaderDep = Annotated[Principal, Depends(require("approver", "auditor"))]
AuditorDep = Annotated[Principal, Depends(require("auditor"))]
AdminDep = Annotated[Principal, Depends(require("admin"))]
AnyRoleDep = Annotated[Principal, Depends(require("trigger", "approver", "auditor", "admin"))]


async def run_rate_limit(request: Request, who: TriggerDep) -> Principal:
    """Per-principal token bucket on starting runs: 429 with Retry-After when the bucket is empty."""
    limiter: TokenBucket = request.app.state.run_limiter
    wait = limiter.take(who.id)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise RateLimited(
            f"this key may start {limiter.per_minute} runs per minute; retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    return who


RateLimitedTriggerDep = Annotated[Principal, Depends(run_rate_limit)]
