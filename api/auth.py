"""API keys: generated once, shown once, stored as SHA-256, identified by a short public prefix."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from countersign.db import utcnow
from countersign.models import ApiKey, Tenant

KEY_PREFIX = "cs_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key (client system or person) of one tenant, with roles."""

    id: str
    tenant_id: str
    roles: frozenset[str]
    agents: frozenset[str] | None
    name: str

    def has(self, role: str) -> bool:
        """Whether the principal holds ``role`` (``approver`` matches any ``approver:<group>``)."""
        return role in self.roles or (
            role == "approver" and any(r.startswith("approver:") for r in self.roles)
        )


def hash_key(secret: str) -> str:
    """SHA-256 of a key: keys are 256-bit random, so a plain hash cannot be brute-forced."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(full key, public prefix). The prefix is shown in listings and accepted by ``keys revoke``."""
    prefix = secrets.token_hex(4)
    return f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


async def ensure_tenant(session: AsyncSession, tenant_id: str, name: str | None = None) -> Tenant:
    """The tenant, created when missing."""
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        tenant = Tenant(id=tenant_id, name=name or tenant_id)
        session.add(tenant)
        await session.flush()
    return tenant


async def create_key(
    session: AsyncSession,
    *,
    tenant_id: str,
    name: str,
    roles: list[str],
    agents: list[str] | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key for an existing tenant; returns the row and the secret (never stored)."""
    secret, prefix = new_key()
    row = ApiKey(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        name=name,
        prefix=prefix,
        key_hash=hash_key(secret),
        roles=sorted(set(roles)),
        agents=agents,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return row, secret


async def authenticate(session: AsyncSession, secret: str) -> Principal | None:
    """The principal of a valid key (not revoked, not expired); records its last use."""
    row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    now = utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now
    return Principal(
        id=f"key:{row.id}",
        tenant_id=row.tenant_id,
        roles=frozenset(row.roles),
        agents=frozenset(row.agents) if row.agents is not None else None,
        name=row.name,
    )
