"""The console's "Sign in with SSO" (authorization code + PKCE) against a local stub OpenID provider."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "countersign-console"


@dataclass
class Provider:
    """A minimal OpenID provider: discovery, authorize (signs in ``person`` at once), token, JWKS."""

    base: str = ""
    person: dict[str, Any] = field(default_factory=dict)
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    redeemed: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.base,
                    "authorization_endpoint": f"{self.base}/authorize",
                    "token_endpoint": f"{self.base}/token",
                    "jwks_uri": f"{self.base}/jwks",
                }
            )

        async def authorize(request: Request) -> Response:
            q = request.query_params
            assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID
            assert q["code_challenge_method"] == "S256" and q["code_challenge"] and q["nonce"]
            code = secrets.token_urlsafe(16)
            self.codes[code] = {
                "challenge": q["code_challenge"],
                "nonce": q["nonce"],
                "redirect_uri": q["redirect_uri"],
            }
            return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}")

        async def token(request: Request) -> Response:
            form = await request.form()
            grant = self.codes.pop(str(form.get("code")), None)
            verifier = str(form.get("code_verifier", ""))
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
            if grant is None or challenge.decode() != grant["challenge"]:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            assert form.get("redirect_uri") == grant["redirect_uri"] and form.get("client_id") == CLIENT_ID
            self.redeemed.append(str(form.get("code")))
            now = dt.datetime.now(dt.UTC)
            claims = {
                "iss": self.base,
                "aud": CLIENT_ID,
                "iat": now,
                "exp": now + dt.timedelta(minutes=5),
                "nonce": grant["nonce"],
                **self.person,
            }
            id_token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})
            return JSONResponse({"access_token": "opaque", "token_type": "Bearer", "id_token": id_token})

        async def jwks(request: Request) -> Response:
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
            return JSONResponse({"keys": [public | {"kid": "k1", "use": "sig", "alg": "RS256"}]})

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/authorize", authorize),
                Route("/token", token, methods=["POST"]),
                Route("/jwks", jwks),
            ]
        )


@asynccontextmanager
async def provider() -> AsyncIterator[Provider]:
    idp = Provider()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    idp.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(idp.app(), lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield idp
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _sso_sign_in(console: httpx.AsyncClient, idp_http: httpx.AsyncClient) -> httpx.Response:
    start = await console.get("/ui/sso", params={"next": "/ui/runs"})
    assert start.status_code == 303 and "cs_sso" in start.headers["set-cookie"]
    assert start.headers["location"].startswith(f"{idp_http.base_url}/authorize")
    assert "code_challenge=" in start.headers["location"]
    back = await idp_http.get(start.headers["location"])
    assert back.status_code in (302, 307)
    callback = urlsplit(back.headers["location"])
    return await console.get(f"{callback.path}?{callback.query}")


async def test_people_sign_in_to_the_console_with_sso(make_stack: Any, sqlite_url: str) -> None:
    async with provider() as idp:
        overrides = {
            "oidc_issuer": idp.base,
            "oidc_audience": "countersign-api",
            "oidc_jwks_url": f"{idp.base}/jwks",
            "oidc_client_id": CLIENT_ID,
        }
        async with (
            make_stack(sqlite_url, worker=False, **overrides) as stack,
            httpx.AsyncClient(base_url=idp.base) as idp_http,
        ):
            console = httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.app), base_url="http://test")
            page = await console.get("/ui")
            assert "Sign in with SSO" in page.text

            idp.person = {"sub": "dana", "tenant": "acme", "roles": ["approver:support"]}
            done = await _sso_sign_in(console, idp_http)
            assert done.status_code == 303 and done.headers["location"] == "/ui/runs", done.text
            assert "HttpOnly" in done.headers.get("set-cookie", "")
            inbox = await console.get("/ui/inbox")
            assert inbox.status_code == 200 and "dana" in inbox.text and "approver:support" in inbox.text
            assert len(idp.redeemed) == 1

            # A callback that did not start here (no flow cookie, or another state) gets no session.
            stranger = httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.app), base_url="http://test")
            r = await stranger.get("/ui/sso/callback", params={"code": "x", "state": "y"})
            assert r.status_code == 403 and "did not start here" in r.text
            assert "cs_session" not in r.headers.get("set-cookie", "")
            start = await stranger.get("/ui/sso")
            back = await idp_http.get(start.headers["location"])
            code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
            r = await stranger.get("/ui/sso/callback", params={"code": code, "state": "forged"})
            assert r.status_code == 403 and (await stranger.get("/ui/inbox")).status_code == 303

            # People whose roles give them nothing here, or of an unknown tenant, are refused.
            for person, why in (
                ({"sub": "erin", "tenant": "acme", "roles": ["trigger"]}, "no access to the console"),
                ({"sub": "finn", "tenant": "nowhere", "roles": ["auditor"]}, "tenant is unknown"),
            ):
                idp.person = person
                other = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=stack.app), base_url="http://test"
                )
                r = await _sso_sign_in(other, idp_http)
                assert r.status_code == 403 and why in r.text, r.text
                await other.aclose()
            await console.aclose()
            await stranger.aclose()


async def test_sso_is_not_offered_without_a_client(make_stack: Any, sqlite_url: str) -> None:
    async with make_stack(sqlite_url, worker=False) as stack:
        assert "Sign in with SSO" not in (await stack.http.get("/ui")).text
        r = await stack.http.get("/ui/sso")
        assert r.status_code == 404
