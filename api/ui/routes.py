"""The web console's pages: sign in, the approver's inbox, a request to decide, runs, and the audit ledger.

Every page reads through the same services as the JSON API, and every decision goes through
``api.services.approvals.decide``: the same role checks, separation of duties, argument-hash binding, quorum
and idempotency. Forms work without JavaScript; htmx only refreshes the inbox in place.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import secrets
import zipfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response

from api import auth
from api.deps import PolicyDep, SessionDep, TemporalDep
from api.errors import CountersignError, Forbidden, Invalid, NotFound, StaleArguments
from api.ratelimit import TokenBucket
from api.schemas import ApprovalRead, DecisionCreate
from api.services import approvals as approval_service
from api.services import audit as audit_service
from api.services import metrics as metrics_service
from api.services import pagination
from api.services import runs as run_service
from api.ui import sessions, sso, views
from approvals import checkpoints, export
from countersign.db import utcnow
from countersign.settings import Settings
from tools.registry import get_tool

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(HERE / "templates"),
        # Everything a model, a tool, a customer or a person wrote is text: escaping is never switched off.
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
)
templates.env.filters.update(when=views.when, pretty=views.pretty, summary=views.summary)


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in page."""


class UiRoute(APIRoute):
    """Console routes answer with pages, not problem+json: a refusal is a page that says why."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = "/ui?" + urlencode({"next": request.url.path}) if request.method == "GET" else "/ui"
                response = RedirectResponse(target, status_code=303)
                if request.headers.get("HX-Request"):
                    response.headers["HX-Redirect"] = target
                response.delete_cookie(sessions.COOKIE, path="/ui")
                return response
            except CountersignError as e:
                return error_page(request, e.status, e.title, e.detail)
            except RequestValidationError as e:
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in err.get('loc', ())[1:])}: {err.get('msg', '')}"
                    for err in e.errors()
                )
                return error_page(request, 422, "Invalid request", detail)

        return page


router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


@dataclass(frozen=True)
class Viewer:
    """The signed-in person: who they are to the services, and their session's CSRF token."""

    who: auth.Principal
    csrf: str

    @property
    def approver(self) -> bool:
        """Whether they may decide requests (of some group)."""
        return self.who.has("approver")

    @property
    def auditor(self) -> bool:
        """Whether they may read the ledger."""
        return self.who.has("auditor")


async def viewer(request: Request) -> Viewer:
    """The signed-in person, from the session cookie; re-checks the key behind the session every time."""
    token = request.cookies.get(sessions.COOKIE, "")
    async with request.app.state.read_sessions() as s:
        found = await sessions.resume(s, token)
    if found is None or not sessions.may_use_console(found[0]):
        raise SignInRequired
    who, row = found
    return Viewer(who, row.csrf)


def needs(*roles: str) -> Callable[[Viewer], Coroutine[Any, Any, Viewer]]:
    """A dependency admitting signed-in people holding any of ``roles``."""

    async def check(v: Annotated[Viewer, Depends(viewer)]) -> Viewer:
        if not any(v.who.has(r) for r in roles):
            raise Forbidden(f"this page needs one of the roles: {', '.join(roles)}")
        return v

    return check


ReaderDep = Annotated[Viewer, Depends(needs("approver", "auditor"))]
ApproverDep = Annotated[Viewer, Depends(needs("approver"))]
AuditorDep = Annotated[Viewer, Depends(needs("auditor"))]


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """A page from ``templates/``; ``viewer`` (when signed in) drives the navigation."""
    return templates.TemplateResponse(request, name, context, status_code=status)


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    """A refusal as a page (and its status code)."""
    return render(request, "error.html", {"title": title, "detail": detail, "status": status}, status)


def check_csrf(v: Viewer, sent: str) -> None:
    """Refuse a state-changing form that did not come from this session's pages."""
    if not sessions.csrf_ok(v.csrf, sent):
        raise Forbidden(
            "this form is out of date or was not sent from the console; reload the page and retry"
        )


def _settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


def _home(v: Viewer) -> str:
    return "/ui/inbox" if v.approver else "/ui/runs"


def _safe_next(target: str | None) -> str | None:
    # Only a console path: an open redirect would hand a signed-in person to anyone's page.
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return None


# ---------------------------------------------------------------------------------------------- sign in


@router.get("")
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    """The sign-in page (or, when signed in already, the person's home page)."""
    try:
        v = await viewer(request)
    except SignInRequired:
        return _sign_in_form(request, next)
    return RedirectResponse(_safe_next(next) or _home(v), status_code=303)


def _sign_in_form(request: Request, next: str | None, error: str = "", status: int = 200) -> Response:
    # Sign-in CSRF: the form's token must match a cookie only this site could have set.
    token = secrets.token_urlsafe(24)
    settings = _settings(request)
    response = render(
        request,
        "sign_in.html",
        {"csrf": token, "next": _safe_next(next) or "", "error": error, "sso": sso.enabled(settings)},
        status,
    )
    _cookie(request, response, sessions.SIGN_IN_COOKIE, token, 3600, path="/ui", samesite="strict")
    return response


@router.post("/sign-in")
async def sign_in(
    request: Request,
    api_key: Annotated[str, Form(max_length=400)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Exchange an API key for a console session (rate-limited per client address)."""
    limiter: TokenBucket = request.app.state.ui_sign_in_limiter
    wait = limiter.take(request.client.host if request.client else "unknown")
    if wait is not None:
        return _sign_in_form(
            request, next, f"Too many sign-in attempts; wait {max(1, int(wait))} s and try again.", 429
        )
    if not sessions.csrf_ok(request.cookies.get(sessions.SIGN_IN_COOKIE, ""), csrf):
        return _sign_in_form(request, next, "The sign-in form expired; please try again.", 403)
    key = api_key.strip()
    if not key:
        return _sign_in_form(request, next, "API key: enter the key you were given.", 422)
    settings = _settings(request)
    async with request.app.state.sessions() as s, s.begin():
        who = await auth.authenticate(s, key)
        if who is not None and sessions.may_use_console(who):
            token = await sessions.start(s, who, settings.ui_session_hours)
    if who is None:
        return _sign_in_form(request, next, "API key: this key is unknown, revoked or expired.", 401)
    if not sessions.may_use_console(who):
        return _sign_in_form(
            request,
            next,
            "This key's roles give no access to the console: it is for approvers and auditors.",
            403,
        )
    response = RedirectResponse(
        _safe_next(next) or ("/ui/inbox" if who.has("approver") else "/ui/runs"), status_code=303
    )
    _session_cookie(request, response, token, settings)
    response.delete_cookie(sessions.SIGN_IN_COOKIE, path="/ui")
    return response


def _sso(request: Request) -> sso.Sso:
    if getattr(request.app.state, "sso", None) is None:
        request.app.state.sso = sso.Sso(_settings(request), request.app.state.jwt)
    client: sso.Sso = request.app.state.sso
    return client


def _redirect_uri(request: Request) -> str:
    return _settings(request).oidc_redirect_url or str(request.url_for("sso_callback"))


@router.get("/sso")
async def sso_begin(request: Request, next: Annotated[str, Query(max_length=2000)] = "") -> Response:
    """Start "Sign in with SSO": off to the identity provider, with state, nonce and a PKCE challenge."""
    if not sso.enabled(_settings(request)):
        raise NotFound("single sign-on is not configured")
    try:
        url, flow = await _sso(request).begin(_redirect_uri(request), _safe_next(next) or "")
    except sso.SsoFailed as e:
        return _sign_in_form(request, next, str(e), 503)
    response = RedirectResponse(url, status_code=303)
    # Lax, not Strict: the provider sends the browser back with a top-level GET from its own site.
    _cookie(request, response, sso.FLOW_COOKIE, flow.cookie(), sso.FLOW_SECONDS, path="/ui/sso")
    return response


@router.get("/sso/callback")
async def sso_callback(
    request: Request,
    code: Annotated[str, Query(max_length=4000)] = "",
    state: Annotated[str, Query(max_length=400)] = "",
    error: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """Finish "Sign in with SSO": check the state, redeem the code with the PKCE verifier, verify the ID
    token, and open a console session for the person it names."""
    if not sso.enabled(_settings(request)):
        raise NotFound("single sign-on is not configured")
    flow = sso.Flow.from_cookie(request.cookies.get(sso.FLOW_COOKIE, ""))
    if error or not code:
        return _sign_in_form(request, "", "The identity provider did not sign you in.", 401)
    settings = _settings(request)
    try:
        claims = await _sso(request).finish(_redirect_uri(request), flow, state, code)
        async with request.app.state.sessions() as s, s.begin():
            verifier: auth.JwtVerifier = request.app.state.jwt
            who = await verifier.person(s, claims)
            if not sessions.may_use_console(who):
                raise sso.SsoFailed(
                    "your roles give no access to the console: it is for approvers and auditors"
                )
            token = await sessions.start(s, who, settings.ui_session_hours)
    except (sso.SsoFailed, auth.TokenRejected) as e:
        response = _sign_in_form(request, "", str(e), 403)
        response.delete_cookie(sso.FLOW_COOKIE, path="/ui/sso")
        return response
    target = (flow.next if flow else "") or ("/ui/inbox" if who.has("approver") else "/ui/runs")
    response = RedirectResponse(_safe_next(target) or "/ui", status_code=303)
    _session_cookie(request, response, token, settings)
    response.delete_cookie(sso.FLOW_COOKIE, path="/ui/sso")
    return response


def _session_cookie(request: Request, response: Response, token: str, settings: Settings) -> None:
    _cookie(request, response, sessions.COOKIE, token, int(settings.ui_session_hours * 3600))


def _cookie(
    request: Request,
    response: Response,
    name: str,
    value: str,
    max_age: int,
    *,
    path: str = "/ui",
    samesite: Literal["lax", "strict"] = "lax",
) -> None:
    """A cookie scripts cannot read, sent back only over HTTPS when the console is served over it."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite=samesite,
        secure=request.url.scheme == "https",
    )


@router.post("/sign-out")
async def sign_out(
    request: Request, v: Annotated[Viewer, Depends(viewer)], csrf: Annotated[str, Form()] = ""
) -> Response:
    """End the session, here and on the server."""
    check_csrf(v, csrf)
    async with request.app.state.sessions() as s, s.begin():
        await sessions.end(s, request.cookies.get(sessions.COOKIE, ""))
    response = RedirectResponse("/ui", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/ui")
    return response


# ------------------------------------------------------------------------------------------------ inbox


async def _inbox_context(
    s: AsyncSession, v: Viewer, status: str, agent: str, tool: str, mine: bool, since: str
) -> dict[str, Any]:
    if status not in approval_service.INBOX_STATUSES:
        raise Invalid(f"status: one of {', '.join(approval_service.INBOX_STATUSES)}")
    items, counts = await approval_service.inbox(
        s, v.who, status=status, agent=agent or None, tool=tool or None, mine=mine
    )
    seen = _parse_since(since)
    rows = [
        {
            "a": a,
            "status": views.status_line(a, views.approvers(row)),
            "age": views.span((utcnow() - a.created_at).total_seconds()),
            "left": views.time_left(a.expires_at) if a.status == "pending" else "-",
            "approvals": len(views.approvers(row)),
            "new": seen is not None and a.created_at > seen,
        }
        for a, row in items
    ]
    query = {"status": status, "agent": agent, "tool": tool, "mine": "1" if mine else ""}
    return {
        "v": v,
        "rows": rows,
        "counts": counts,
        "filters": query,
        "since": since or utcnow().isoformat(),
        "refresh": "/ui/inbox/rows?" + urlencode({**query, "since": since or utcnow().isoformat()}),
        "tab": lambda name: "/ui/inbox?" + urlencode({**query, "status": name}),
    }


def _parse_since(text: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


@router.get("/inbox")
async def inbox(
    request: Request,
    v: ApproverDep,
    s: SessionDep,
    status: str = "pending",
    agent: Annotated[str, Query(max_length=100)] = "",
    tool: Annotated[str, Query(max_length=100)] = "",
    mine: str = "",
) -> Response:
    """The requests this person may decide, most urgent first, with filters and counts per status."""
    context = await _inbox_context(s, v, status, agent, tool, bool(mine), "")
    return render(request, "inbox.html", context)


@router.get("/inbox/rows")
async def inbox_rows(
    request: Request,
    v: ApproverDep,
    s: SessionDep,
    status: str = "pending",
    agent: Annotated[str, Query(max_length=100)] = "",
    tool: Annotated[str, Query(max_length=100)] = "",
    mine: str = "",
    since: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """The inbox's list alone, for the live refresh; rows newer than ``since`` are marked new."""
    context = await _inbox_context(s, v, status, agent, tool, bool(mine), since)
    return render(request, "_inbox_rows.html", context)


# ------------------------------------------------------------------------------------- approval request


async def _request_context(s: AsyncSession, v: Viewer, request_id: str) -> dict[str, Any]:
    row = await approval_service.get_row(s, v.who, request_id)
    a = await approval_service.describe(s, row)
    approved_by = views.approvers(row)
    run = await run_service.get_run(s, v.who, a.run_id)
    tool = get_tool(a.tool)
    evidence = row.evidence or {}
    return {
        "v": v,
        "a": a,
        "row": row,
        "run": run,
        "status": views.status_line(a, approved_by),
        "tool_description": tool.description if tool else "(this tool is no longer registered)",
        "arguments": [
            (k, views.pretty(val) if not isinstance(val, str) else val) for k, val in a.arguments.items()
        ],
        "gate_reason": evidence.get("gate_reason"),
        "gate_facts": [(k, views.pretty(val)) for k, val in (evidence.get("facts") or {}).items()],
        "steps": evidence.get("steps") or [],
        "approved_by": approved_by,
        "left": views.time_left(a.expires_at) if a.status == "pending" else "-",
        "may_decide": v.approver and views.may_decide(v.who, a, row.requested_by, approved_by),
        "own_run": v.who.id == row.requested_by,
        "editable": tool is not None,
    }


@router.get("/approvals/{request_id}")
async def approval_page(
    request: Request, request_id: str, v: ReaderDep, s: SessionDep, done: str = ""
) -> Response:
    """What the agent wants to do and why, the evidence, the policy, and the decision buttons this person may
    use."""
    context = await _request_context(s, v, request_id)
    context["done"] = done if done in ("approve", "edit", "reject", "respond") else ""
    return render(request, "approval.html", context)


@router.post("/approvals/{request_id}/decide")
async def decide(
    request: Request,
    request_id: str,
    v: ApproverDep,
    s: SessionDep,
    temporal: TemporalDep,
    policy: PolicyDep,
    action: Annotated[str, Form(max_length=20)],
    arguments_hash: Annotated[str, Form(max_length=128)],
    csrf: Annotated[str, Form(max_length=200)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    message: Annotated[str, Form(max_length=4000)] = "",
    arguments: Annotated[str, Form(max_length=60_000)] = "",
) -> Response:
    """Approve, edit, reject or respond, through the same service as ``POST /v1/approvals/{id}/decisions``."""
    check_csrf(v, csrf)
    try:
        body = DecisionCreate(
            action=action,
            arguments_hash=arguments_hash,
            reason=reason or None,
            message=message or None,
            arguments=json.loads(arguments) if arguments else None,
        )
    except (ValidationError, ValueError) as e:
        problem = (
            "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors(include_url=False))
            if isinstance(e, ValidationError)
            else "the edited arguments are not valid JSON"
        )
        return await _request_again(request, s, v, request_id, problem, 422)
    try:
        state = request.app.state
        await approval_service.decide(
            s, state.read_sessions, temporal, policy, state.settings, v.who, request_id, body
        )
    except StaleArguments:
        return await _request_again(
            request,
            s,
            v,
            request_id,
            "The arguments changed since this page was shown, so nothing was decided. "
            "These are the current arguments: review them and decide again.",
            409,
        )
    except (Invalid, Forbidden) as e:
        return await _request_again(request, s, v, request_id, e.detail, e.status)
    return RedirectResponse(f"/ui/approvals/{request_id}?done={body.action}", status_code=303)


async def _request_again(
    request: Request, s: AsyncSession, v: Viewer, request_id: str, problem: str, status: int
) -> Response:
    # The decision's transaction may have been committed or rolled back: read afresh.
    await s.rollback()
    context = await _request_context(s, v, request_id)
    context |= {"problem": problem, "done": ""}
    return render(request, "approval.html", context, status)


@router.get("/approvals/{request_id}/edit")
async def edit_page(request: Request, request_id: str, v: ApproverDep, s: SessionDep) -> Response:
    """A form for the arguments, generated from the tool's argument schema, filled with the proposed ones."""
    context = await _request_context(s, v, request_id)
    tool = get_tool(context["a"].tool)
    if tool is None or not context["may_decide"]:
        raise Forbidden("this request cannot be edited by you now")
    context["fields"] = views.form_fields(tool.args_model, context["a"].arguments)
    return render(request, "edit.html", context)


@router.post("/approvals/{request_id}/edit")
async def edit_preview(
    request: Request, request_id: str, v: ApproverDep, s: SessionDep, policy: PolicyDep
) -> Response:
    """Validate the edited arguments server-side and show them against the proposed ones before deciding."""
    form = {k: str(val) for k, val in (await request.form()).items()}
    check_csrf(v, form.get("csrf", ""))
    context = await _request_context(s, v, request_id)
    a: ApprovalRead = context["a"]
    tool = get_tool(a.tool)
    if tool is None or not context["may_decide"]:
        raise Forbidden("this request cannot be edited by you now")
    if form.get("arguments_hash") != a.arguments_hash:
        context |= {
            "fields": views.form_fields(tool.args_model, a.arguments),
            "problem": "The arguments changed since the form was shown; the form now holds the current ones.",
        }
        return render(request, "edit.html", context, 409)
    edited, fields = views.parse_form(tool.args_model, views.form_fields(tool.args_model, a.arguments), form)
    problem = ""
    if edited is not None:
        try:
            approval_service.check_edit(policy, context["row"], edited)
        except Invalid as e:
            problem, edited = e.detail, None
    if edited is None:
        context |= {"fields": fields, "problem": problem or "Some arguments are not valid; see below."}
        return render(request, "edit.html", context, 422)
    context |= {"edited": json.dumps(edited, sort_keys=True), "diff": views.diff(a.arguments, edited)}
    return render(request, "edit_confirm.html", context)


# ------------------------------------------------------------------------------------------------- runs


@router.get("/runs")
async def runs_page(
    request: Request,
    v: ReaderDep,
    s: SessionDep,
    agent: Annotated[str, Query(max_length=100)] = "",
    status: Annotated[str, Query(max_length=32)] = "",
    date: Annotated[str, Query(max_length=10)] = "",
    cursor: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """The tenant's runs, newest first, filtered by agent, status and day, a page at a time."""
    day_from = day_until = None
    if date:
        try:
            day = dt.date.fromisoformat(date)
        except ValueError as e:
            raise Invalid("date: a day as YYYY-MM-DD") from e
        day_from = dt.datetime.combine(day, dt.time(), dt.UTC)
        day_until = day_from + dt.timedelta(days=1)
    page = await run_service.list_runs(
        s,
        v.who,
        status=status or None,
        agent=agent or None,
        cursor=cursor or None,
        limit=50,
        created_from=day_from,
        created_until=day_until,
    )
    filters = {"agent": agent, "status": status, "date": date}
    more = "/ui/runs?" + urlencode({**filters, "cursor": page.next_cursor}) if page.next_cursor else ""
    return render(request, "runs.html", {"v": v, "page": page, "filters": filters, "more": more})


@router.get("/runs/{run_id}")
async def run_page(request: Request, run_id: str, v: ReaderDep, s: SessionDep) -> Response:
    """A run: status, input, output, the timeline of its ledger events, usage and cost, and its trace."""
    run = await run_service.get_run(s, v.who, run_id)
    events, _ = await audit_service.search(s, v.who, run_id=run_id, limit=1000)
    spans = await audit_service.spans(s, run)
    requests = await approval_service.list_requests(
        s, v.who, status=None, run_id=run_id, cursor=None, limit=pagination.MAX_PAGE
    )
    settings = _settings(request)
    return render(
        request,
        "run.html",
        {
            "v": v,
            "run": run_service.to_read(run),
            "events": [(e, views.event_summary(e)) for e in events],
            "bars": views.waterfall(spans),
            "requests": requests.items,
            "temporal_url": (
                f"{settings.resolved_temporal_ui_url()}/namespaces/{settings.temporal_namespace}"
                f"/workflows/run-{run.id}"
            ),
        },
    )


@router.get("/operations")
async def operations_page(request: Request, v: ReaderDep, s: SessionDep) -> Response:
    """Per agent: runs by status, people's time to decide, edit and reject rates per tool, escalations and
    cost per task, from the same numbers as GET /metrics (this tenant's share of them)."""
    families = await metrics_service.collect(s, tenant=v.who.tenant_id)
    return render(request, "operations.html", {"v": v, "agents": views.operations(families)})


# ------------------------------------------------------------------------------------------------ audit


@router.get("/audit")
async def audit_page(
    request: Request,
    v: AuditorDep,
    s: SessionDep,
    run_id: Annotated[str, Query(max_length=64)] = "",
    actor: Annotated[str, Query(max_length=200)] = "",
    type: Annotated[str, Query(max_length=64)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    cursor: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """Search the tenant's ledger by run, actor, type prefix and time range."""
    filters = {"run_id": run_id, "actor": actor, "type": type, "since": since, "until": until}
    try:
        events, nxt = await audit_service.search(
            s,
            v.who,
            run_id=run_id,
            actor=actor,
            type=type,
            since=since,
            until=until,
            cursor=cursor,
            limit=100,
        )
    except Invalid as e:
        return render(
            request, "audit.html", {"v": v, "filters": filters, "events": [], "problem": e.detail}, 422
        )
    more = "/ui/audit?" + urlencode({**filters, "cursor": nxt}) if nxt else ""
    return render(
        request,
        "audit.html",
        {"v": v, "filters": filters, "events": [(e, views.event_summary(e)) for e in events], "more": more},
    )


@router.get("/audit/verify")
async def audit_verify(request: Request, v: AuditorDep, s: SessionDep) -> Response:
    """Recompute the ledger's hash chain (and check its signed checkpoints when a public key is set)."""
    settings = _settings(request)
    # The public key, or the one of the signing key this deployment holds (checkpoints are signed with it).
    text = settings.audit_public_key or (
        settings.audit_signing_key.get_secret_value() if settings.audit_signing_key else ""
    )
    public = checkpoints.load_public_key(text) if text else None
    outside = await asyncio.to_thread(checkpoints.read_file, settings.resolved_checkpoint_file())
    result = await checkpoints.verify_ledger(s, public, outside)
    return render(request, "audit_verify.html", {"v": v, "chain": result.chain, "anchors": result.anchors})


@router.get("/audit/export")
async def audit_export(request: Request, v: AuditorDep, s: SessionDep) -> Response:
    """The tenant's ledger events, the signed checkpoints and a manifest, as one zip file."""
    settings = _settings(request)
    outside = await asyncio.to_thread(checkpoints.read_file, settings.resolved_checkpoint_file())
    result = await export.build(s, outside_checkpoints=outside, tenant=v.who.tenant_id)

    def pack() -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("events.jsonl", result.events)
            z.writestr("checkpoints.jsonl", result.checkpoints)
            z.writestr("manifest.json", result.manifest_text)
        return buffer.getvalue()

    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return Response(
        await asyncio.to_thread(pack),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="countersign-audit-{stamp}.zip"'},
    )
