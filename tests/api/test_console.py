"""The web console (/ui) over HTTP: sign-in and sessions, pages × roles, CSRF, stale arguments, edit
validation, escaping, and a decision taken in the console running through the real workflow."""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from api.ui.views import quantile
from approvals.models import ApprovalRequest, AuditEvent
from countersign.db import utcnow
from countersign.hashing import canonical_hash
from countersign.models import ApiKey, Run
from tests.api.test_roles import seed_tenant
from tests.conftest import Stack

XSS = "<img src=x onerror=alert(1)> <script>alert(2)</script>"


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name!r} in the page"
    return found.group(1).replace("&#34;", '"').replace("&quot;", '"').replace("&amp;", "&")


async def sign_in(http: httpx.AsyncClient, key: str) -> httpx.Response:
    """Sign in as a person would: load the form, send the key with the form's token."""
    http.cookies.clear()
    page = await http.get("/ui")
    assert page.status_code == 200
    return await http.post("/ui/sign-in", data={"api_key": key, "csrf": _hidden(page.text, "csrf")})


async def console(stack: Stack, key: str) -> httpx.AsyncClient:
    """A browser-like client of the stack's app, signed in with ``key``."""
    assert stack.app is not None
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.app), base_url="http://test")
    r = await sign_in(http, key)
    assert r.status_code == 303, r.text
    return http


def _csp_ok(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"]


@pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_console_pages_for_every_role(make_stack: Any, db_url: str) -> None:
    async with make_stack(db_url, worker=False) as stack:
        acme = await seed_tenant(stack.sessions, "acme-ui")
        globex = await seed_tenant(stack.sessions, "globex-ui")
        run_id, request_id = acme.ids["run_id"], acme.ids["request_id"]
        async with stack.sessions() as s, s.begin():
            # What a customer and a model wrote reaches the page: it must show as text.
            await s.execute(update(Run).where(Run.id == run_id).values(input={"ticket_id": XSS}))
            await s.execute(
                update(ApprovalRequest)
                .where(ApprovalRequest.id == request_id)
                .values(reason=XSS, evidence={"facts": {'order_customer("O-5002")': "C-101"}, "steps": []})
            )
        http = stack.http

        # No session: the sign-in page (with its headers) and redirects to it.
        r = await http.get("/ui")
        assert r.status_code == 200 and "API key" in r.text and "Sign in" in r.text
        _csp_ok(r)
        pages = ("/ui/inbox", f"/ui/approvals/{request_id}", "/ui/runs", f"/ui/runs/{run_id}", "/ui/audit")
        for path in pages:
            r = await http.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/ui?next="), path
            _csp_ok(r)

        # Sign-in: keys without a console role, unknown keys and forged forms are refused.
        for role, status in (("trigger", 403), ("admin", 403), ("none", 403)):
            r = await sign_in(http, acme.keys[role])
            assert r.status_code == status and "no access to the console" in r.text, role
        r = await sign_in(http, "cs_nothing_here")
        assert r.status_code == 401 and "unknown, revoked or expired" in r.text
        http.cookies.clear()
        r = await http.post("/ui/sign-in", data={"api_key": acme.keys["approver"], "csrf": "forged"})
        assert r.status_code == 403 and "cs_session" not in r.headers.get("set-cookie", "")

        r = await sign_in(http, acme.keys["approver"])
        assert r.status_code == 303 and r.headers["location"] == "/ui/inbox"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Path=/ui" in cookie and "Max-Age" in cookie
        approver = await console(stack, acme.keys["approver"])
        auditor = await console(stack, acme.keys["auditor"])
        other = await console(stack, globex.keys["approver"])
        other_auditor = await console(stack, globex.keys["auditor"])

        # Pages × roles.
        expect = {
            "/ui/inbox": {"approver": 200, "auditor": 403},
            f"/ui/approvals/{request_id}": {"approver": 200, "auditor": 200},
            "/ui/runs": {"approver": 200, "auditor": 200},
            f"/ui/runs/{run_id}": {"approver": 200, "auditor": 200},
            "/ui/operations": {"approver": 200, "auditor": 200},
            "/ui/audit": {"approver": 403, "auditor": 200},
            "/ui/audit/verify": {"approver": 403, "auditor": 200},
            "/ui/audit/export": {"approver": 403, "auditor": 200},
        }
        for path, by_role in expect.items():
            for role, client in (("approver", approver), ("auditor", auditor)):
                r = await client.get(path)
                assert r.status_code == by_role[role], (path, role, r.text[:300])
                _csp_ok(r)
        for path in (f"/ui/approvals/{request_id}", f"/ui/runs/{run_id}"):
            for client in (other, other_auditor):
                r = await client.get(path)
                assert r.status_code == 404, path
        assert request_id not in (await other.get("/ui/inbox")).text
        assert run_id not in (await other_auditor.get("/ui/runs")).text
        assert request_id not in (await other_auditor.get("/ui/audit")).text

        # The inbox lists the request with a link; the request page shows every argument and the buttons.
        inbox = (await approver.get("/ui/inbox")).text
        assert f'href="/ui/approvals/{request_id}"' in inbox and "order_id=O-5002" in inbox
        assert 'hx-trigger="every 5s"' in inbox and "badge new" not in inbox
        # The live refresh marks what arrived since the page was loaded.
        rows = await approver.get("/ui/inbox/rows", params={"since": "2000-01-01T00:00:00+00:00"})
        assert rows.status_code == 200 and "badge new" in rows.text and "<html" not in rows.text
        assert "badge new" not in (await approver.get("/ui/inbox/rows", params={"since": "2999-01-01"})).text
        assert request_id not in (await approver.get("/ui/inbox?status=expired")).text
        assert (await approver.get("/ui/inbox?status=bogus")).status_code == 422
        page = (await approver.get(f"/ui/approvals/{request_id}")).text
        wanted = ("issue_refund", "O-5002", "250", "refund-needs-finance", ">Approve<", ">Reject<", "Reason")
        for want in wanted:
            assert want in page, want
        # What the policy looked up in the tenant's records to judge the call is shown with it.
        assert "The policy looked up" in page and "order_customer(&#34;O-5002&#34;)" in page
        # Everything others wrote is text: no tag of theirs survives into the page.
        assert "<script>alert(2)</script>" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
        audit_page = (await auditor.get(f"/ui/approvals/{request_id}")).text
        assert ">Approve<" not in audit_page and ">Reject<" not in audit_page
        assert "as an auditor" in audit_page
        run_page = (await auditor.get(f"/ui/runs/{run_id}")).text
        assert "<script>alert(2)</script>" not in run_page and "completed" in run_page
        assert "/namespaces/default/workflows/run-" in run_page

        # CSRF: a decision without the session's token is refused and changes nothing.
        h = _hidden(page, "arguments_hash")
        form = {"action": "reject", "reason": "no", "arguments_hash": h}
        r = await approver.post(f"/ui/approvals/{request_id}/decide", data=form)
        assert r.status_code == 403 and "reload the page" in r.text
        r = await approver.post(f"/ui/approvals/{request_id}/decide", data=form | {"csrf": "guess"})
        assert r.status_code == 403
        # A stale page: the hash it was rendered with is not the request's any more.
        csrf = _hidden(page, "csrf")
        r = await approver.post(
            f"/ui/approvals/{request_id}/decide",
            data={"action": "approve", "arguments_hash": "f" * 64, "csrf": csrf},
        )
        assert r.status_code == 409 and "arguments changed" in r.text and "O-5002" in r.text
        r = await approver.post(
            f"/ui/approvals/{request_id}/decide", data={"action": "reject", "arguments_hash": h, "csrf": csrf}
        )
        assert r.status_code == 422 and "reason" in r.text
        # Edit: the form is generated from the tool's schema and validated on the server.
        edit = await approver.get(f"/ui/approvals/{request_id}/edit")
        assert edit.status_code == 200 and 'name="amount"' in edit.text and 'type="number"' in edit.text
        base = {"csrf": csrf, "arguments_hash": h, "order_id": "O-5002", "reason": "damaged chair"}
        r = await approver.post(f"/ui/approvals/{request_id}/edit", data=base | {"amount": "abc"})
        assert r.status_code == 422 and "Amount: not a valid number" in r.text
        r = await approver.post(f"/ui/approvals/{request_id}/edit", data=base | {"amount": "-5"})
        assert r.status_code == 422 and "greater than 0" in r.text
        r = await approver.post(f"/ui/approvals/{request_id}/edit", data=base | {"amount": "200"})
        assert r.status_code == 200 and "changed" in r.text and "200.0" in r.text and "250.0" in r.text
        assert json.loads(_hidden(r.text, "arguments"))["amount"] == 200.0
        async with stack.sessions() as s:
            assert (await s.get(ApprovalRequest, request_id)).status == "pending"  # type: ignore[union-attr]

        # Auditors: verify and export.
        r = await auditor.get("/ui/audit/verify")
        assert "OK" in r.text and "Head hash" in r.text
        r = await auditor.get("/ui/audit/export")
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            manifest = json.loads(z.read("manifest.json"))
            events = [json.loads(line) for line in z.read("events.jsonl").decode().splitlines()]
        assert manifest["filter"]["tenant"] == "acme-ui" and events
        assert {e["tenant_id"] for e in events} == {"acme-ui"}
        r = await auditor.get("/ui/audit?type=run.")
        assert r.status_code == 200 and "run.completed" in r.text
        r = await auditor.get("/ui/audit?since=yesterday")
        assert r.status_code == 422 and "since" in r.text

        # A revoked key ends its sessions on the next request; signing out ends the session for good.
        async with stack.sessions() as s, s.begin():
            await s.execute(
                update(ApiKey).where(ApiKey.name == "acme-ui auditor").values(revoked_at=utcnow())
            )
        r = await auditor.get("/ui/runs")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui?")
        token = approver.cookies.get("cs_session")
        r = await approver.post("/ui/sign-out", data={"csrf": csrf})
        assert r.status_code == 303
        approver.cookies.set("cs_session", token or "", path="/ui")
        assert (await approver.get("/ui/inbox")).status_code == 303
        for client in (approver, auditor, other, other_auditor):
            await client.aclose()


async def test_console_cookie_is_secure_over_https(make_stack: Any, sqlite_url: str) -> None:
    async with make_stack(sqlite_url, worker=False) as stack:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=stack.app), base_url="https://console.test"
        )
        r = await sign_in(http, stack.keys["alice"])
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]
        await http.aclose()


async def test_console_sign_in_is_rate_limited(make_stack: Any, sqlite_url: str) -> None:
    async with make_stack(sqlite_url, worker=False, ui_sign_ins_per_minute=3) as stack:
        statuses = [(await sign_in(stack.http, "cs_wrong")).status_code for _ in range(5)]
        assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]
        assert "Too many sign-in attempts" in (await sign_in(stack.http, "cs_wrong")).text


async def test_a_console_edit_runs_through_the_workflow(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [pending] = await stack.pending(run["id"])
    alice = await console(stack, stack.keys["alice"])
    inbox = (await alice.get("/ui/inbox")).text
    assert f"/ui/approvals/{pending['id']}" in inbox
    page = await alice.get(f"/ui/approvals/{pending['id']}")
    # The evidence: what the agent read before it proposed the refund.
    assert "get_ticket" in page.text and "cracked base" in page.text
    csrf, h = _hidden(page.text, "csrf"), _hidden(page.text, "arguments_hash")
    preview = await alice.post(
        f"/ui/approvals/{pending['id']}/edit",
        data={"csrf": csrf, "arguments_hash": h, "order_id": "O-5002", "amount": "180", "reason": "partial"},
    )
    assert preview.status_code == 200, preview.text
    edited = json.loads(_hidden(preview.text, "arguments"))
    r = await alice.post(
        f"/ui/approvals/{pending['id']}/decide",
        data={"csrf": csrf, "arguments_hash": h, "action": "edit", "arguments": json.dumps(edited)},
    )
    assert r.status_code == 303 and r.headers["location"].endswith("?done=edit")
    after = await alice.get(r.headers["location"])
    assert "approved" in after.text and "Your decision (edit) was recorded" in after.text
    done = await stack.result(run["id"])
    assert done["status"] == "completed"
    async with stack.sessions() as s:
        executed = (
            await s.scalars(
                select(AuditEvent).where(AuditEvent.run_id == run["id"], AuditEvent.type == "tool.executed")
            )
        ).all()
    # Exactly the edited arguments ran, once.
    refund = [e for e in executed if e.data["tool"] == "issue_refund"]
    assert len(refund) == 1 and refund[0].data["arguments_hash"] == canonical_hash(edited)
    auditor = await console(stack, stack.keys["auditor"])
    run_page = (await auditor.get(f"/ui/runs/{run['id']}")).text
    assert "completed" in run_page and "tool.executed" in run_page and "issue_refund" in run_page
    assert "invoke_agent" in run_page and "<svg" in run_page  # the trace's waterfall
    ops = (await auditor.get("/ui/operations")).text
    # The one decision was an edit: issue_refund's proposals were edited every time, rejected never.
    assert "support_drafting" in ops and "<code>issue_refund</code>" in ops
    assert "100.0 %" in ops and "0.0 %" in ops and "p50 " in ops and "p50 -" not in ops
    await alice.aclose()
    await auditor.aclose()


def test_quantiles_interpolate_within_buckets_as_prometheus_does() -> None:
    inf = float("inf")
    assert quantile(0.5, [(60.0, 0), (300.0, 10), (inf, 10)]) == 180.0
    assert quantile(0.95, [(60.0, 5), (300.0, 5), (inf, 10)]) == 300.0  # beyond the last bound
    assert quantile(0.5, [(60.0, 0), (inf, 0)]) is None
