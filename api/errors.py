"""Errors that carry their HTTP meaning, rendered as ``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

PROBLEM = "application/problem+json"
TYPE_BASE = "https://countersign.dev/problems/"


class CountersignError(Exception):
    """Base of every refusal the API reports; ``code`` is the stable problem type."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extra = extra


class Unauthorized(CountersignError):
    status, code, title = 401, "unauthorized", "Missing or invalid credentials"


class Forbidden(CountersignError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(CountersignError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(CountersignError):
    status, code, title = 409, "conflict", "Conflict"


class IdempotencyConflict(Conflict):
    code, title = "idempotency_conflict", "Idempotency-Key reused with a different request"


class AlreadyDecided(Conflict):
    code, title = "already_decided", "The approval request is no longer pending"


class StaleArguments(Conflict):
    code, title = "stale_arguments", "The arguments changed since they were shown"


class RunFinished(Conflict):
    code, title = "run_finished", "The run has already finished"


class PayloadTooLarge(CountersignError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class Invalid(CountersignError):
    status, code, title = 422, "invalid", "Invalid request"


class RateLimited(CountersignError):
    status, code, title = 429, "rate_limited", "Too many requests for this key"


class ActiveRunsLimit(CountersignError):
    status, code, title = 429, "active_runs_limit", "The tenant has too many active runs"


class Unavailable(CountersignError):
    status, code, title = 503, "unavailable", "A dependency is unavailable"


RETRY_AFTER = {"Retry-After": "5"}
# Temporal answers that mean "not now" rather than "no": the client should retry.
TRANSIENT_RPC = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.ABORTED,
    }
)


def problem(
    status: int, code: str, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A problem+json response."""
    body = {"type": TYPE_BASE + code, "title": title, "status": status, "detail": detail, **extra}
    all_headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    all_headers.update(headers or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=all_headers or None)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Render every error the app can raise as problem+json."""

    @app.exception_handler(CountersignError)
    async def _ours(request: Request, exc: CountersignError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.title, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(RPCError)
    async def _temporal(request: Request, exc: RPCError) -> JSONResponse:
        if exc.status not in TRANSIENT_RPC:
            raise exc
        return problem(
            503, "unavailable", Unavailable.title, "Temporal is unavailable; retry later", headers=RETRY_AFTER
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # A locked, restarting or unreachable database is a reason to retry, not a server fault; anything
        # else the driver refuses is a bug and stays a 500.
        if not (exc.connection_invalidated or _transient_db(exc)):
            raise exc
        return problem(
            503,
            "unavailable",
            Unavailable.title,
            "the database is busy or unavailable; retry later",
            headers=RETRY_AFTER,
        )

    @app.exception_handler(PoolTimeout)
    async def _pool(request: Request, exc: PoolTimeout) -> JSONResponse:
        return problem(
            503, "unavailable", Unavailable.title, "the database is busy; retry later", headers=RETRY_AFTER
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "invalid", "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI answers 400 only for a body it cannot decode: report it as the invalid body it is.
            detail = f"body: {exc.detail}"
            return problem(
                422,
                "invalid",
                "Invalid request",
                detail,
                errors=[{"field": "body", "message": str(exc.detail)}],
            )
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 401: "unauthorized"}
        return problem(
            exc.status_code,
            codes.get(exc.status_code, "http_error"),
            str(exc.detail),
            str(exc.detail),
            headers=dict(exc.headers or {}),  # 405 carries Allow
        )


def _transient_db(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(
        sign in text
        for sign in ("database is locked", "connection", "could not connect", "timeout", "shutting down")
    )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": desc, "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for code, desc in {
        401: "Missing, unknown, revoked or expired credentials",
        403: "The principal may not do this",
        404: "Not found (or not in the principal's tenant)",
        409: "Conflicts with the current state",
        413: "Request body too large",
        422: "Invalid request; names the field",
        429: "Too many requests (per-key rate limit or the tenant's cap on active runs)",
        503: "A dependency (Temporal or the database) is unavailable; retry after Retry-After seconds",
    }.items()
}


PROBLEM_RESPONSES[429]["headers"] = {
    "Retry-After": {
        "description": "Seconds until the key may start another run (rate limit only)",
        "schema": {"type": "integer", "minimum": 1},
        "required": False,
    }
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting these problem statuses."""
    return {code: PROBLEM_RESPONSES[code] for code in codes}
