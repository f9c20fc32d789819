"""Sign in with SSO: the OpenID Connect authorization code flow with PKCE (``authlib``), for people whose
identity provider the deployment trusts (``COUNTERSIGN_OIDC_*``).

The browser carries the flow's state, nonce and PKCE verifier in a short-lived HttpOnly cookie; the
callback accepts a code only with the matching state, exchanges it with the verifier, and verifies the ID
token (issuer, audience = this client, signature from the provider's JWKS, nonce) before a console session is
made from its subject, tenant and roles.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client

from api.auth import JwtVerifier, TokenRejected
from countersign.settings import Settings

FLOW_COOKIE = "cs_sso"
FLOW_SECONDS = 600


class SsoFailed(Exception):
    """The sign-in did not complete; the message is safe to show."""


@dataclass(frozen=True)
class Flow:
    """One sign-in in progress, kept by the browser until the provider sends it back."""

    state: str
    nonce: str
    verifier: str
    next: str

    def cookie(self) -> str:
        """The cookie value."""
        return json.dumps([self.state, self.nonce, self.verifier, self.next])

    @classmethod
    def from_cookie(cls, text: str) -> Flow | None:
        """The flow a cookie holds, or None when it is missing or not one of ours."""
        try:
            state, nonce, verifier, nxt = json.loads(text)
        except (ValueError, TypeError):
            return None
        if not all(isinstance(v, str) for v in (state, nonce, verifier, nxt)):
            return None
        return cls(state, nonce, verifier, nxt)


def enabled(settings: Settings) -> bool:
    """Whether the console offers "Sign in with SSO"."""
    return bool(settings.oidc_issuer and settings.oidc_jwks_url and settings.oidc_client_id)


class Sso:
    """The console's OIDC client for one provider; its discovery document is fetched once."""

    def __init__(self, settings: Settings, verifier: JwtVerifier) -> None:
        self.settings, self.verifier = settings, verifier
        self._endpoints: dict[str, Any] | None = None

    def _client(self, redirect_uri: str) -> AsyncOAuth2Client:
        secret = self.settings.oidc_client_secret
        return AsyncOAuth2Client(
            client_id=self.settings.oidc_client_id,
            client_secret=secret.get_secret_value() if secret else None,
            token_endpoint_auth_method="client_secret_post" if secret else "none",
            scope=self.settings.oidc_scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=10,
        )

    async def _discover(self) -> dict[str, Any]:
        if self._endpoints is None:
            url = self.settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                async with httpx.AsyncClient(timeout=10) as http:
                    response = await http.get(url)
                    response.raise_for_status()
                    found = response.json()
            except (httpx.HTTPError, ValueError) as e:
                raise SsoFailed("the identity provider cannot be reached; try again later") from e
            if not isinstance(found, dict) or not all(
                isinstance(found.get(k), str) for k in ("authorization_endpoint", "token_endpoint")
            ):
                raise SsoFailed("the identity provider's discovery document is incomplete")
            self._endpoints = found
        return self._endpoints

    async def begin(self, redirect_uri: str, next_path: str) -> tuple[str, Flow]:
        """The provider's authorization URL to send the browser to, and the flow to remember."""
        endpoints = await self._discover()
        flow = Flow(
            secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48), next_path
        )
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                endpoints["authorization_endpoint"],
                state=flow.state,
                code_verifier=flow.verifier,
                nonce=flow.nonce,
            )
        return url, flow

    async def finish(self, redirect_uri: str, flow: Flow | None, state: str, code: str) -> dict[str, Any]:
        """The verified ID token claims of a completed sign-in; raises ``SsoFailed`` saying why not."""
        if flow is None or not secrets.compare_digest(flow.state, state):
            raise SsoFailed("the sign-in expired or did not start here; please sign in again")
        endpoints = await self._discover()
        try:
            async with self._client(redirect_uri) as client:
                token = await client.fetch_token(
                    endpoints["token_endpoint"], code=code, code_verifier=flow.verifier, state=state
                )
        except Exception as e:  # authlib raises OAuthError, httpx errors, or ValueError on a bad answer
            raise SsoFailed("the identity provider did not accept the sign-in") from e
        id_token = token.get("id_token") if isinstance(token, dict) else None
        if not isinstance(id_token, str):
            raise SsoFailed("the identity provider sent no ID token")
        try:
            claims = await self.verifier.claims(id_token, audience=self.settings.oidc_client_id)
        except TokenRejected as e:
            raise SsoFailed(f"the ID token does not verify: {e}") from e
        if not secrets.compare_digest(str(claims.get("nonce", "")), flow.nonce):
            raise SsoFailed("the ID token was not issued for this sign-in")
        return claims
