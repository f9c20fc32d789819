"""Who is calling: API keys (client systems) and OIDC bearer tokens (people).

API keys are generated once, shown once, stored as SHA-256 and identified by a short public prefix. People
present a JWT from the configured OIDC provider, verified against its issuer, audience and JWKS; their roles
and tenant come from configured claims.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from approvals import audit
from approvals.policy import declared_roles
from countersign.db import utcnow
from countersign.models import ApiKey, Tenant
from countersign.repositories import keys as key_repository
from countersign.settings import Settings

KEY_PREFIX = "cs_"
log = logging.getLogger("countersign.auth")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key (client system) or a person, of one tenant, with roles."""

    id: str
    tenant_id: str
    roles: frozenset[str]
    agents: frozenset[str] | None
    name: str
    kind: Literal["key", "user"] = "key"

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
    tenant = await key_repository.get_tenant(session, tenant_id)
    if tenant is None:
        tenant = Tenant(id=tenant_id, name=name or tenant_id)
        await key_repository.add(session, tenant)
    return tenant


async def create_key(
    session: AsyncSession,
    *,
    tenant_id: str,
    name: str,
    roles: list[str],
    agents: list[str] | None = None,
    expires_at: dt.datetime | None = None,
    actor: str = "system",
) -> tuple[ApiKey, str]:
    """Create a key for an existing tenant; returns the row and the secret (never stored, never logged)."""
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
    await key_repository.add(session, row)
    await audit.append(
        session,
        audit.NewEvent(
            id=f"key:{row.id}:created",
            type="key.created",
            actor=actor,
            tenant_id=tenant_id,
            data={
                "key_id": row.id,
                "prefix": prefix,
                "name": name,
                "roles": row.roles,
                "agents": agents,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        ),
    )
    return row, secret


LAST_USE_RESOLUTION_SECONDS = 60  # a key's last use is recorded at most once a minute


async def valid_key(session: AsyncSession, secret: str) -> ApiKey | None:
    """The key of that secret if it is valid (known, not revoked, not expired); reads only."""
    row = await key_repository.by_hash(session, hash_key(secret))
    now = utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return row


def use_is_stale(row: ApiKey) -> bool:
    """Whether the key's recorded last use is older than the resolution it is kept at."""
    last = row.last_used_at
    return last is None or (utcnow() - last).total_seconds() > LAST_USE_RESOLUTION_SECONDS


def principal_of(row: ApiKey) -> Principal:
    """Who a valid key speaks for."""
    return Principal(
        id=f"key:{row.id}",
        tenant_id=row.tenant_id,
        roles=frozenset(row.roles),
        agents=frozenset(row.agents) if row.agents is not None else None,
        name=row.name,
    )


async def authenticate(session: AsyncSession, secret: str) -> Principal | None:
    """The principal of a valid key (not revoked, not expired); records its last use in ``session``'s
    transaction (in a savepoint, best effort: a busy database must not fail the request)."""
    row = await valid_key(session, secret)
    if row is None:
        return None
    if use_is_stale(row):
        try:
            async with session.begin_nested():
                await key_repository.touch(session, row.id, utcnow())
        except DBAPIError:
            log.warning("could not record the last use of key %s; the request goes on", row.prefix)
    return principal_of(row)


def looks_like_jwt(token: str) -> bool:
    """JWTs are three dot-separated parts; API keys never contain a dot."""
    return token.count(".") == 2


_FAMILIES: dict[str, tuple[str, ...]] = {"RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("EdDSA",)}


class TokenRejected(Exception):
    """A bearer token that does not verify; the message is safe to return to the caller."""


class JwtVerifier:
    """Verifies people's OIDC tokens against the configured issuer, audience and JWKS.

    The JWKS (an http(s) URL or a file) is cached; an unknown ``kid`` refetches it at most every
    ``refresh_interval`` seconds, so a provider's key rotation is picked up without letting bad tokens force a
    fetch per request.
    """

    def __init__(
        self, settings: Settings, *, cache_seconds: float = 300, refresh_interval: float = 30
    ) -> None:
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.source = settings.oidc_jwks_url
        self.roles_claim = settings.oidc_roles_claim
        self.tenant_claim = settings.oidc_tenant_claim
        self.algorithms = list(settings.oidc_algorithms)
        self.leeway = settings.oidc_leeway_seconds
        self.known_roles = settings.known_roles() | declared_roles(settings.policy_path)
        self.cache_seconds, self.refresh_interval = cache_seconds, refresh_interval
        self._keys: list[tuple[jwt.PyJWK, dict[str, Any]]] | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        """Whether people's tokens are accepted at all (issuer, audience and JWKS configured)."""
        return bool(self.issuer and self.audience and self.source)

    async def _load(self) -> list[tuple[jwt.PyJWK, dict[str, Any]]]:
        if self.source.startswith(("https://", "http://")):
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.get(self.source)
                response.raise_for_status()
                data: Any = response.json()
        else:
            data = json.loads(await asyncio.to_thread(Path(self.source).read_text))
        keys = []
        for raw in data.get("keys", []) if isinstance(data, dict) else []:
            # Signing keys only; symmetric ("oct") keys would let anyone holding the JWKS mint tokens.
            if not isinstance(raw, dict) or raw.get("kty") == "oct" or raw.get("use", "sig") != "sig":
                continue
            try:
                keys.append((jwt.PyJWK(raw), raw))
            except jwt.PyJWTError:
                continue
        if not keys:
            raise ValueError("the JWKS holds no usable signing key")
        return keys

    async def _key(self, kid: str | None) -> tuple[jwt.PyJWK, dict[str, Any]]:
        async with self._lock:
            age = time.monotonic() - self._fetched
            stale = self._keys is None or age > self.cache_seconds
            if stale or (self._find(kid) is None and age > self.refresh_interval):
                try:
                    self._keys, self._fetched = await self._load(), time.monotonic()
                except (OSError, ValueError, httpx.HTTPError) as e:
                    log.warning("oidc.jwks_unavailable %s", type(e).__name__)
                    if self._keys is None:
                        raise TokenRejected("the identity provider's keys are unavailable") from e
            found = self._find(kid)
        if found is None:
            raise TokenRejected("the token was signed by an unknown key")
        return found

    def _find(self, kid: str | None) -> tuple[jwt.PyJWK, dict[str, Any]] | None:
        keys = self._keys or []
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((k for k in keys if k[1].get("kid") == kid), None)

    async def claims(self, token: str, *, audience: str | None = None) -> dict[str, Any]:
        """The verified claims of ``token`` (for ``audience``, by default the API's); raises ``TokenRejected``
        saying why not."""
        if not (self.issuer and self.source and (audience or self.audience)):
            raise TokenRejected("this API accepts API keys only (no identity provider is configured)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise TokenRejected("the token is malformed") from e
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise TokenRejected(f"the token's algorithm {alg!r} is not accepted")
        key, raw = await self._key(header.get("kid"))
        # The token's alg must fit the key: the key's own "alg" when it names one, else its type.
        if raw.get("alg", alg) != alg or not str(alg).startswith(_FAMILIES.get(str(raw.get("kty")), ("-",))):
            raise TokenRejected("the token's algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=audience or self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise TokenRejected("the token has expired") from e
        except jwt.InvalidAudienceError as e:
            raise TokenRejected("the token is for another audience") from e
        except jwt.InvalidIssuerError as e:
            raise TokenRejected("the token is from another issuer") from e
        except jwt.InvalidSignatureError as e:
            raise TokenRejected("the token's signature does not verify") from e
        except jwt.PyJWTError as e:
            raise TokenRejected(f"the token is invalid ({type(e).__name__})") from e
        return claims

    def roles(self, claims: dict[str, Any]) -> frozenset[str]:
        """Known roles named by the roles claim (a list or a space-separated string); others are ignored."""
        value = claims.get(self.roles_claim)
        names = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        return frozenset(str(r) for r in names if str(r) in self.known_roles)

    async def authenticate(self, session: AsyncSession, token: str) -> Principal:
        """The person the token names, in an existing tenant; raises ``TokenRejected``."""
        return await self.person(session, await self.claims(token))

    async def person(self, session: AsyncSession, claims: dict[str, Any]) -> Principal:
        """The person verified ``claims`` name, in an existing tenant, with the known roles they grant."""
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise TokenRejected(f"the token has no {self.tenant_claim!r} claim")
        if await key_repository.get_tenant(session, tenant) is None:
            raise TokenRejected("the token's tenant is unknown")
        subject = str(claims["sub"])
        return Principal(
            id=f"user:{subject}",
            tenant_id=tenant,
            roles=self.roles(claims),
            agents=None,
            name=subject,
            kind="user",
        )
