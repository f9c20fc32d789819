"""Web console sessions: an API key (or an SSO sign-in) exchanged for a random, server-side session.

The cookie holds only the session token; the database holds its SHA-256, the person's tenant and roles, and
the per-session CSRF token that every form must carry back. A session made from an API key re-reads the key
on every request, so a revoked or expired key ends it at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from countersign.db import utcnow
from countersign.models import UiSession
from countersign.repositories import keys

COOKIE = "cs_session"
SIGN_IN_COOKIE = "cs_sign_in"
# Someone who holds none of these has nothing to do in the console (a trigger key is a client system's).
CONSOLE_ROLES = ("approver", "auditor")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def may_use_console(who: Principal) -> bool:
    """Whether the principal holds a role the console serves."""
    return any(who.has(r) for r in CONSOLE_ROLES)


async def start(s: AsyncSession, who: Principal, hours: float) -> str:
    """A new session for ``who``; returns the cookie's token (shown once, never stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    # Expired sessions are dead already; clearing them here keeps the table small without a sweeper.
    await keys.delete_expired_sessions(s, now)
    await keys.add(
        s,
        UiSession(
            id=_digest(token),
            tenant_id=who.tenant_id,
            principal_id=who.id,
            key_id=who.id.removeprefix("key:") if who.kind == "key" else None,
            name=who.name,
            roles=sorted(who.roles),
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + dt.timedelta(hours=hours),
        ),
    )
    return token


async def end(s: AsyncSession, token: str) -> None:
    """Sign out: the session is gone, whatever the browser still holds."""
    await keys.delete_session(s, _digest(token))


async def resume(s: AsyncSession, token: str) -> tuple[Principal, UiSession] | None:
    """The principal and session of a cookie token; None when unknown, expired, or its key is revoked or
    expired."""
    if not token:
        return None
    row = await keys.get_session(s, _digest(token))
    now = utcnow()
    if row is None or row.expires_at <= now:
        return None
    roles, agents = row.roles, None
    if row.key_id is not None:
        key = await keys.by_id(s, row.key_id)
        if (
            key is None
            or key.revoked_at is not None
            or (key.expires_at is not None and key.expires_at <= now)
        ):
            return None
        roles, agents = key.roles, key.agents
    who = Principal(
        id=row.principal_id,
        tenant_id=row.tenant_id,
        roles=frozenset(roles),
        agents=frozenset(agents) if agents is not None else None,
        name=row.name,
        kind="key" if row.key_id is not None else "user",
    )
    return who, row


def csrf_ok(expected: str, sent: str | None) -> bool:
    """Whether a form carried the session's CSRF token (compared in constant time)."""
    return bool(sent) and hmac.compare_digest(expected.encode(), (sent or "").encode())
