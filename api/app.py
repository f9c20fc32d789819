"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from api import errors
from api.auth import JwtVerifier
from api.ratelimit import TokenBucket
from api.routes import approvals, audit, meta, metrics, runs, webhooks
from api.schemas import Problem, RunEvent
from api.ui import console
from approvals.policy import PolicyStore
from countersign import telemetry
from countersign.db import dispose, make_engine, read_only, session_factory
from countersign.process import freeze_startup_objects
from countersign.settings import Settings
from tools.registry import fact_signatures, signatures
from workers.client import API_RETRIES, connect

log = logging.getLogger("countersign.api")


# A NUL written as a JSON escape: \u0000 preceded by an even number of backslashes (an odd number would make
# it the text "\u0000" rather than the character).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class RequestGuard:
    """Checks every request before the app sees it: bodies over ``limit`` bytes get 413 (whether or not
    Content-Length is sent), and a NUL character in the path, the query or the body gets 422: no database
    stores it, so it must never get as far as a write (or a workflow that would retry that write)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if b"%00" in raw_path or b"\x00" in raw_path or b"%00" in scope.get("query_string", b""):
            await self._refuse(scope, receive, send, 422, "the path or query contains a NUL character")
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send, 413, f"the body exceeds {self.limit} bytes")
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(message, receive), send)
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.limit:
                await self._refuse(scope, receive, send, 413, f"the body exceeds {self.limit} bytes")
                return
        if b"\x00" in body or _JSON_NUL.search(body):
            await self._refuse(scope, receive, send, 422, "the body contains a NUL character")
            return
        await self.app(
            scope, _replay({"type": "http.request", "body": body, "more_body": False}, receive), send
        )

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        if status == 413:
            response = errors.problem(413, "payload_too_large", "Request body too large", detail)
        else:
            response = errors.problem(
                422, "invalid", "Invalid request", detail, errors=[{"field": "request", "message": detail}]
            )
        await response(scope, receive, send)


def _replay(first: Message, receive: Receive) -> Receive:
    """A receive that hands out the already-read message once, then defers to the server's."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def operation_id(route: APIRoute) -> str:
    """OpenAPI operation ids are the route functions' names (``create_run``), unique across the app."""
    return route.name


def create_app(
    settings: Settings | None = None,
    *,
    sessions: async_sessionmaker[AsyncSession] | None = None,
    temporal: Client | None = None,
    serving: bool = False,
) -> FastAPI:
    """The API. Resources passed in (tests) are used as they are; otherwise the lifespan builds them.
    ``serving``: the app is the process's one service (start-up objects are then frozen for the GC)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = None
        app.state.settings = settings
        # Reading files and compiling the policy's conditions take a while: not on the event loop.
        app.state.jwt = await asyncio.to_thread(JwtVerifier, settings)
        app.state.run_limiter = TokenBucket(settings.runs_per_minute)
        app.state.policy = await asyncio.to_thread(
            PolicyStore, settings.policy_path, settings.known_roles(), signatures(), fact_signatures()
        )
        if sessions is None:
            engine = make_engine(settings.resolved_database_url())
            if settings.trace_sql:
                SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, tracer_provider=provider)
            app.state.sessions = session_factory(engine)
        else:
            app.state.sessions = sessions
        app.state.read_sessions = read_only(app.state.sessions)
        app.state.temporal = temporal
        if temporal is None:
            try:
                app.state.temporal = await connect(settings, retry=API_RETRIES)
            except Exception as e:  # readyz reports it; runs fail with 503 until Temporal is back
                log.warning("Temporal not reachable at start-up: %s", e)
        if serving:
            freeze_startup_objects()
        yield
        if engine is not None:
            await dispose(engine)

    app = FastAPI(
        title="Countersign",
        version="0.1.0",
        summary="Durable AI agents that ask before they act.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # The request spans and metrics come from OpenTelemetry's FastAPI instrumentation (below), which
        # FastAPI's own would otherwise wrap around every request, to find it there and stand aside.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    errors.install(app)
    app.include_router(runs.router)
    app.include_router(approvals.router)
    app.include_router(webhooks.router)
    app.include_router(meta.router)
    app.include_router(audit.router)
    app.include_router(metrics.router)
    app.state.metrics_cache = metrics.ScrapeCache(settings.metrics_cache_seconds)
    console.install(app, settings)
    provider = telemetry.configure(
        "countersign-api", settings.resolved_database_url(), settings.trace_retention_days
    )
    # One span per request: the ASGI receive/send spans would double the spans stored and say nothing an
    # auditor or an engineer reads.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls="/v1/healthz,/v1/readyz",
        exclude_spans=["receive", "send"],
    )
    app.add_middleware(RequestGuard, limit=settings.max_body_bytes)

    original = app.openapi

    def openapi() -> dict[str, object]:
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema()
        # The data of each event of GET /v1/runs/{run_id}/events (a stream, so no response model names it).
        components["RunEvent"] = RunEvent.model_json_schema()
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """Entry point for ``uvicorn --factory api.app:app_from_env``."""
    return create_app(Settings(), serving=True)
