"""Identity: API key lifecycle (revoked and expired keys are refused at once) and people's OIDC tokens."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import update

from api.auth import create_key, ensure_tenant
from countersign.models import ApiKey
from tests.conftest import Stack

ISSUER = "https://id.example.test/"
AUDIENCE = "countersign-api"


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COUNTERSIGN_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, check=False
    )


async def test_revoked_and_expired_keys_are_refused_at_once(stack: Stack) -> None:
    async with stack.sessions() as s, s.begin():
        row, secret = await create_key(s, tenant_id="acme", name="short-lived", roles=["auditor"])
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await stack.http.get("/v1/runs", headers=headers)).status_code == 200
    async with stack.sessions() as s:
        used = await s.get(ApiKey, row.id)
        assert used is not None and used.last_used_at is not None

    async with stack.sessions() as s, s.begin():
        await s.execute(update(ApiKey).where(ApiKey.id == row.id).values(expires_at=dt.datetime.now(dt.UTC)))
    expired = await stack.http.get("/v1/runs", headers=headers)
    assert expired.status_code == 401 and expired.headers["www-authenticate"] == "Bearer"
    assert expired.json()["type"].endswith("/unauthorized")

    db_url = stack.settings.resolved_database_url()
    listed = await asyncio.to_thread(_cli, db_url, "keys", "list", "--tenant", "acme")
    assert listed.returncode == 0 and f"{row.prefix}" in listed.stdout and "expired" in listed.stdout
    trigger_prefix = stack.keys["trigger"].split("_")[1]
    assert (await stack.http.get("/v1/runs", headers=stack.auth("trigger"))).status_code == 200
    revoked = await asyncio.to_thread(_cli, db_url, "keys", "revoke", trigger_prefix)
    assert revoked.returncode == 0, revoked.stderr
    assert (await stack.http.get("/v1/runs", headers=stack.auth("trigger"))).status_code == 401
    for bad in ("", "Bearer", "Basic dXNlcjpwdw==", "Bearer cs_00000000_nope"):
        r = await stack.http.get("/v1/runs", headers={"Authorization": bad} if bad else {})
        assert r.status_code == 401, bad


# --- people: OIDC bearer tokens --------------------------------------------------------------------------


@dataclass
class Idp:
    """A local identity provider: an RSA key pair published as a JWKS file."""

    key: rsa.RSAPrivateKey
    kid: str
    jwks_path: Path

    def token(self, claims: dict[str, Any] | None = None, *, key: Any = None, **headers: Any) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice-123",
            "iat": now,
            "exp": now + 300,
            "tenant": "acme",
            "roles": ["trigger"],
            **(claims or {}),
        }
        pem = (key or self.key).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return jwt.encode(body, pem, algorithm="RS256", headers={"kid": self.kid, **headers})


def _jwks(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**public, "kid": kid, "use": "sig", "alg": "RS256"}]}


@pytest.fixture
def idp(tmp_path: Path) -> Idp:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex[:8]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(_jwks(key, kid)))
    return Idp(key, kid, path)


def _oidc(jwks: str) -> dict[str, Any]:
    return {"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE, "oidc_jwks_url": jwks}


@pytest.fixture
async def people(make_stack: Any, db_url: str, idp: Idp) -> AsyncIterator[Stack]:
    """A stack accepting the local provider's tokens, with a second tenant ``globex``."""
    async with make_stack(db_url, **_oidc(str(idp.jwks_path))) as stack:
        async with stack.sessions() as s, s.begin():
            await ensure_tenant(s, "globex")
        yield stack


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_person_with_the_trigger_role_starts_a_run_as_themself(people: Stack, idp: Idp) -> None:
    r = await people.http.post(
        "/v1/runs",
        json={"agent": "support_drafting", "input": {"ticket_id": "T-1001"}},
        headers=bearer(idp.token()),
    )
    assert r.status_code == 201, r.text
    assert r.json()["requested_by"] == "user:alice-123"
    done = await people.result(r.json()["id"])
    assert done["status"] == "completed"


async def test_roles_come_from_the_claim_and_are_enforced(people: Stack, idp: Idp) -> None:
    run = await people.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await people.pending(run["id"])
    auditor = bearer(idp.token({"roles": "auditor"}))  # a space-separated string works too
    assert (await people.http.get(f"/v1/runs/{run['id']}", headers=auditor)).status_code == 200
    refused = await people.http.post(
        "/v1/runs", json={"agent": "support_drafting", "input": {"ticket_id": "T-1001"}}, headers=auditor
    )
    assert refused.status_code == 403 and refused.json()["type"].endswith("/forbidden")
    nobody = bearer(idp.token({"roles": ["superuser", "root"]}))  # unknown roles grant nothing
    assert (await people.http.get("/v1/runs", headers=nobody)).status_code == 403
    assert (await people.http.get("/v1/approvals", headers=nobody)).status_code == 403

    approver = bearer(idp.token({"sub": "fiona", "roles": ["approver:finance"]}))
    body = {"action": "approve", "arguments_hash": item["arguments_hash"]}
    decided = await people.http.post(f"/v1/approvals/{item['id']}/decisions", json=body, headers=approver)
    assert decided.status_code == 201, decided.text
    shown = (await people.http.get(f"/v1/approvals/{item['id']}", headers=auditor)).json()
    assert [d["principal_id"] for d in shown["decisions"]] == ["user:fiona"]
    assert (await people.result(run["id"]))["status"] == "completed"

    other_tenant = bearer(idp.token({"tenant": "globex", "roles": ["auditor", "approver:finance"]}))
    assert (await people.http.get(f"/v1/runs/{run['id']}", headers=other_tenant)).status_code == 404
    assert (await people.http.get(f"/v1/approvals/{item['id']}", headers=other_tenant)).status_code == 404
    assert (await people.http.get("/v1/runs", headers=other_tenant)).json()["items"] == []


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing}.{_b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


async def test_tokens_that_do_not_verify_are_401(people: Stack, idp: Idp) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = idp.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    cases = {
        "audience": idp.token({"aud": "another-api"}),
        "issuer": idp.token({"iss": "https://evil.example.test/"}),
        "expired": idp.token({"iat": now - 7200, "exp": now - 3600}),
        "signature": idp.token(key=stranger),
        "unknown key": idp.token(kid="rotated-away"),
        "tenant": idp.token({"tenant": None}),
        "unknown": idp.token({"tenant": "no-such-tenant"}),
        # The classic confusion attack: HMAC "signed" with the provider's public key as the secret.
        "algorithm": _hs256(
            {"alg": "HS256", "typ": "JWT", "kid": idp.kid},
            {
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": "x",
                "exp": now + 60,
                "tenant": "acme",
                "roles": ["trigger"],
            },
            public_pem,
        ),
        "none": ".".join(
            _b64(json.dumps(part).encode())
            for part in ({"alg": "none", "kid": idp.kid}, {"sub": "x", "tenant": "acme"})
        )
        + ".",
        "malformed": "abc.def.ghi",
    }
    for why, token in cases.items():
        r = await people.http.get("/v1/runs", headers=bearer(token))
        assert r.status_code == 401, (why, r.text)
        assert r.json()["type"].endswith("/unauthorized")
    detail = (await people.http.get("/v1/runs", headers=bearer(cases["audience"]))).json()["detail"]
    assert "audience" in detail
    assert (await people.http.get("/v1/runs", headers=bearer(idp.token()))).status_code == 200


@contextmanager
def _serving_jwks(jwks: dict[str, Any]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(jwks).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_jwks_from_a_url_and_api_keys_only_when_unconfigured(
    make_stack: Any, db_url: str, idp: Idp
) -> None:
    with _serving_jwks(json.loads(idp.jwks_path.read_text())) as url:
        async with make_stack(db_url, worker=False, **_oidc(url)) as stack:
            assert (await stack.http.get("/v1/runs", headers=bearer(idp.token()))).status_code == 200
    async with make_stack(db_url, worker=False) as plain:
        r = await plain.http.get("/v1/runs", headers=bearer(idp.token()))
        assert r.status_code == 401 and "API keys only" in r.json()["detail"]
        assert (await plain.http.get("/v1/runs", headers=plain.auth("trigger"))).status_code == 200
