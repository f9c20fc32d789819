"""Queries over tenants, API keys and web console sessions: who may call, and as whom."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from countersign.models import ApiKey, Tenant, UiSession


async def get_tenant(s: AsyncSession, tenant_id: str) -> Tenant | None:
    """The tenant of that id, if it exists."""
    return await s.get(Tenant, tenant_id)


async def add(s: AsyncSession, row: Tenant | ApiKey | UiSession) -> None:
    """Insert a tenant, key or console session and flush."""
    s.add(row)
    await s.flush()


# Every request authenticates: the statement is built once (building it, and its cache key, cost more than
# running it on SQLite).
_BY_HASH = select(ApiKey).where(ApiKey.key_hash == bindparam("key_hash"))


async def by_hash(s: AsyncSession, key_hash: str) -> ApiKey | None:
    """The key whose secret hashes to ``key_hash``."""
    row: ApiKey | None = await s.scalar(_BY_HASH, {"key_hash": key_hash})
    return row


async def by_id(s: AsyncSession, key_id: str) -> ApiKey | None:
    """The key of that id, read from the database (not the session's identity map)."""
    row: ApiKey | None = await s.scalar(select(ApiKey).where(ApiKey.id == key_id))
    return row


async def by_prefix_or_hash(s: AsyncSession, prefix: str, key_hash: str) -> ApiKey | None:
    """The key with that public prefix, or whose secret hashes to ``key_hash``."""
    row: ApiKey | None = await s.scalar(
        select(ApiKey).where(or_(ApiKey.prefix == prefix, ApiKey.key_hash == key_hash))
    )
    return row


async def touch(s: AsyncSession, key_id: str, now: dt.datetime) -> None:
    """Record the key's last use."""
    await s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


async def oldest_first(s: AsyncSession, tenant_id: str | None = None) -> list[ApiKey]:
    """Every key (or one tenant's), oldest first."""
    q = select(ApiKey).order_by(ApiKey.created_at)
    if tenant_id:
        q = q.where(ApiKey.tenant_id == tenant_id)
    return list((await s.scalars(q)).all())


async def get_session(s: AsyncSession, session_id: str) -> UiSession | None:
    """The console session of that id (the SHA-256 of its cookie token)."""
    return await s.get(UiSession, session_id)


async def delete_session(s: AsyncSession, session_id: str) -> None:
    """Remove one console session."""
    await s.execute(delete(UiSession).where(UiSession.id == session_id))


async def delete_expired_sessions(s: AsyncSession, now: dt.datetime) -> None:
    """Remove the console sessions that expired by ``now``."""
    await s.execute(delete(UiSession).where(UiSession.expires_at <= now))
