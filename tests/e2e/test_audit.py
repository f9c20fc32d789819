"""Audit and tracing: one trace per run across a worker SIGKILL and an approval; no content in telemetry;
a tamper-evident ledger; export and verify; cost and budgets."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from approvals.audit import verify
from approvals.models import AuditEvent, WebhookDelivery
from cli.main import app as cli
from countersign import telemetry
from countersign.telemetry import SpanRecord
from tests.conftest import Stack, worker_process
from tools.business import Customer, Order, Ticket

CANARY = "CANARY-9f2c71"


async def drop_sqlite_guards(s: AsyncSession) -> None:
    """What an attacker with write access to the SQLite file does before tampering with the ledger."""
    for name in list(await s.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))):
        await s.execute(text(f"DROP TRIGGER {name}"))


def spans_of(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for node in tree:
        out.append(node)
        out.extend(spans_of(node["children"]))
    return out


async def trace_with(stack: Stack, run_id: str, name: str) -> dict[str, Any]:
    """The run's trace once a span called ``name`` is in it."""
    for _ in range(200):
        tree: dict[str, Any] = (
            await stack.http.get(f"/v1/runs/{run_id}/trace", headers=stack.auth("auditor"))
        ).json()
        if any(s["name"] == name for s in spans_of(tree["spans"])):
            return tree
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} span in the trace of run {run_id}")


async def approve(stack: Stack, item: dict[str, Any], key: str = "alice") -> None:
    r = await stack.http.post(
        f"/v1/approvals/{item['id']}/decisions",
        headers=stack.auth(key),
        json={"action": "approve", "arguments_hash": item["arguments_hash"]},
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_one_trace_from_request_to_completion_across_a_kill_and_an_approval(
    make_stack: Any, db_url: str
) -> None:
    async with make_stack(db_url, worker=False) as stack:
        first = worker_process(stack)
        second = None
        try:
            run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
            [item] = await stack.pending(run["id"])
            second = worker_process(stack)
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            await approve(stack, item)
            done = await stack.result(run["id"])
        finally:
            for p in (first, second):
                if p is not None and p.poll() is None:
                    # A worker stopped by SIGTERM exports its last spans before it exits.
                    p.terminate()
                    await asyncio.to_thread(p.wait, 30)
        assert done["status"] == "completed"
        await telemetry.flush()
        # The worker process exports its spans in the background (never blocking a run): wait for them.
        tree = await trace_with(stack, run["id"], "invoke_agent support_drafting")
        spans = spans_of(tree["spans"])
        assert {s["trace_id"] for s in spans} == {done["trace_id"]}
        assert tree["spans"][0]["name"] == "POST /v1/runs"
        [invoke] = [s for s in spans if s["name"] == "invoke_agent support_drafting"]
        assert invoke["attributes"]["gen_ai.usage.input_tokens"] == done["usage"]["input_tokens"]
        # A SIGKILLed worker loses the spans it had not exported yet (at most 200 ms of them); the model call
        # after the approval ran on the second worker and is always there.
        chats = [s for s in spans if s["name"] == "chat scripted"]
        assert chats
        for chat in chats:
            attrs = chat["attributes"]
            assert attrs["gen_ai.provider.name"] == "scripted" and attrs["gen_ai.request.model"] == "scripted"
            assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
        [refund] = [s for s in spans if s["name"] == "execute_tool issue_refund"]
        assert refund["attributes"]["gen_ai.tool.name"] == "issue_refund"
        assert refund["attributes"]["gen_ai.tool.call.id"]
        assert refund["attributes"]["approval.request_id"] == item["id"]
        [decide] = [s for s in spans if s["name"] == "approval.decide"]
        assert decide["attributes"]["approval.decider_id"] == stack.principals["alice"]
        assert decide["attributes"]["approval.action"] == "approve"
        [decided] = [s for s in spans if s["name"] == "approval.decided"]
        assert decided["attributes"]["approval.rule"] == "refund-needs-finance"
        assert decided["attributes"]["approval.policy_version"] == item["policy_version"]
        assert decided["attributes"]["approval.status"] == "approved"
        # The decision and the resumed tool ran on the second worker: still the same trace.
        other = await stack.http.get(f"/v1/runs/{run['id']}/trace", headers=stack.auth("trigger"))
        assert other.status_code == 200


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_content_stays_out_of_spans_logs_and_ledger(
    stack: Stack, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with stack.store.sessions() as s, s.begin():
        s.add(Customer(tenant_id="acme", id="C-900", name=f"Secret {CANARY}", email=f"{CANARY}@example.com"))
        await s.flush()
        s.add(
            Order(
                tenant_id="acme",
                id="O-9000",
                customer_id="C-900",
                status="delivered",
                total=99.0,
                items=[{"sku": CANARY}],
                placed_at=datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC),
                delivered_at=None,
            )
        )
        await s.flush()
        s.add(
            Ticket(
                tenant_id="acme",
                id="T-9000",
                customer_id="C-900",
                order_id="O-9000",
                subject=f"about {CANARY}",
                body=f"my secret is {CANARY}",
                requested_refund=30.0,
            )
        )
    hook = await stack.http.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=stack.auth("admin")
    )
    assert hook.status_code == 201, hook.text
    run = await stack.start("support_drafting", {"ticket_id": "T-9000"})
    done = await stack.result(run["id"])
    assert CANARY in done["output"]["reply"]  # the content is there, for the caller
    await telemetry.flush()
    async with stack.sessions() as s:
        spans = list(await s.scalars(select(SpanRecord).where(SpanRecord.trace_id == done["trace_id"])))
        ledger = list(await s.scalars(select(AuditEvent).where(AuditEvent.run_id == run["id"])))
    assert len(spans) > 10
    assert all(CANARY not in json.dumps([sp.name, sp.attributes, sp.events]) for sp in spans)
    assert all(CANARY not in json.dumps(e.data) for e in ledger)
    async with stack.sessions() as s:
        bodies = list(await s.scalars(select(WebhookDelivery.body)))
    assert bodies and all(CANARY not in b for b in bodies)
    # At the service's log level nothing carries content; our own loggers never do, at any level (a
    # driver's DEBUG output of SQL parameters is the operator's explicit choice).
    leaks = [
        f"{r.name}: {r.getMessage()[:300]}"
        for r in caplog.records
        if CANARY in r.getMessage() and (r.levelno >= logging.INFO or r.name.startswith("countersign"))
    ]
    assert leaks == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_sqlite_ledger_edit_or_delete_is_reported_at_the_first_broken_event(
    stack: Stack, db_url: str
) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    await stack.result(run["id"])
    async with stack.sessions() as s:
        result = await verify(s)
        assert result.ok and result.checked > 8
    async with stack.sessions() as s, s.begin():
        await s.execute(update(AuditEvent).where(AuditEvent.seq == 5).values(actor="someone else"))
    async with stack.sessions() as s:
        broken = await verify(s)
    assert not broken.ok and broken.broken_at == 5 and "hash" in (broken.problem or "")
    async with stack.sessions() as s, s.begin():
        await s.execute(text("DELETE FROM audit_events WHERE seq >= 5"))
    async with stack.sessions() as s:
        truncated = await verify(s)
    assert not truncated.ok and truncated.broken_at == 5


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_postgres_refuses_ledger_updates_and_deletes(stack: Stack, db_url: str) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    await stack.result(run["id"])
    for statement in (
        "UPDATE audit_events SET actor = 'x' WHERE seq = 3",
        "DELETE FROM audit_events WHERE seq = 3",
        "TRUNCATE audit_events",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with stack.sessions() as s, s.begin():
                await s.execute(text(statement))
    async with stack.sessions() as s:
        assert (await verify(s)).ok


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_export_then_verify_round_trip_and_cli(stack: Stack, db_url: str, tmp_path: Path) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    await stack.result(run["id"])
    env = {"COUNTERSIGN_DATABASE_URL": db_url, "COUNTERSIGN_DATA_DIR": str(tmp_path)}
    runner = CliRunner()

    async def invoke(*args: str) -> Any:
        # In a thread: the CLI runs its own event loop, as it does from a shell.
        return await asyncio.to_thread(runner.invoke, cli, list(args), env=env)

    ok = await invoke("audit", "verify")
    assert ok.exit_code == 0 and ok.output.startswith("OK")
    for args in (["--run", run["id"]], []):
        out = tmp_path / ("run" if args else "all")
        exported = await invoke("audit", "export", "--out", str(out), *args)
        assert exported.exit_code == 0, exported.output
        manifest = json.loads((out / "manifest.json").read_text())
        lines = (out / "events.jsonl").read_text().splitlines()
        assert manifest["count"] == len(lines) > 0
        assert (await invoke("audit", "verify", "--export", str(out))).exit_code == 0
    full = tmp_path / "all"
    events = [json.loads(line) for line in (full / "events.jsonl").read_text().splitlines()]
    events[3]["data"]["tampered"] = True
    body = "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in events)
    (full / "events.jsonl").write_text(body)
    bad = await invoke("audit", "verify", "--export", str(full))
    assert bad.exit_code == 1 and "sha256" in bad.output
    manifest = json.loads((full / "manifest.json").read_text())

    manifest["events_sha256"] = hashlib.sha256(body.encode()).hexdigest()
    (full / "manifest.json").write_text(json.dumps(manifest))
    worse = await invoke("audit", "verify", "--export", str(full))
    assert worse.exit_code == 1 and f"seq {events[3]['seq']}" in worse.output
    async with stack.sessions() as s, s.begin():
        await drop_sqlite_guards(s)
        await s.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(data={"x": 1}))
    broken = await invoke("audit", "verify")
    assert broken.exit_code == 1 and "BROKEN at event seq 2" in broken.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_cost_by_price_table_and_budget_stop(make_stack: Any, db_url: str) -> None:
    prices = {"scripted": {"input_per_million": 1000.0, "output_per_million": 2000.0}}
    async with make_stack(db_url, prices=prices) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        done = await stack.result(run["id"])
        usage = done["usage"]
        expected = (usage["input_tokens"] * 1000 + usage["output_tokens"] * 2000) / 1e6
        assert usage["cost_usd"] == pytest.approx(expected) and expected > 0
        r = await stack.http.post(
            "/v1/runs",
            headers=stack.auth("trigger"),
            json={
                "agent": "support_drafting",
                "input": {"ticket_id": "T-1001"},
                "budget": {"max_model_calls": 2},
            },
        )
        # The budget is spent: the run goes to a person, who lets it go (it ends failed, abandoned).
        [item] = await stack.pending(r.json()["id"])
        assert item["tool"] == "escalate_to_person" and item["arguments"]["reason"] == "budget_exceeded"
        assert item["arguments"]["errors"] == {"limit": "max_model_calls"}
        reject = {"action": "reject", "arguments_hash": item["arguments_hash"], "reason": "not worth it"}
        decided = await stack.http.post(
            f"/v1/approvals/{item['id']}/decisions", json=reject, headers=stack.auth("alice")
        )
        assert decided.status_code == 201, decided.text
        stopped = await stack.result(r.json()["id"])
        assert stopped["status"] == "failed"
        assert stopped["error"]["reason"] == "abandoned" and stopped["error"]["stopped"] == "budget_exceeded"
        assert stopped["usage"]["model_calls"] == 2
        async with stack.sessions() as s:
            [failed] = list(
                await s.scalars(
                    select(AuditEvent).where(
                        AuditEvent.run_id == stopped["id"], AuditEvent.type == "run.failed"
                    )
                )
            )
            assert await s.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.run_id == stopped["id"], AuditEvent.type == "run.escalated")
            )
            calls = await s.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.run_id == stopped["id"], AuditEvent.type == "model.called")
            )
        assert failed.data["error"]["reason"] == "abandoned" and calls == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_audit_events_api_filters_and_tenancy(stack: Stack, db_url: str) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    await approve(stack, item)
    await stack.result(run["id"])
    page = (
        await stack.http.get(
            f"/v1/audit/events?run_id={run['id']}&type=approval.", headers=stack.auth("auditor")
        )
    ).json()
    assert [e["type"] for e in page["items"]] == ["approval.requested", "approval.decided"]
    decided = page["items"][1]
    assert decided["actor"] == stack.principals["alice"] and decided["trace_id"] == run["trace_id"]
    by_actor = (
        await stack.http.get(
            f"/v1/audit/events?actor={stack.principals['alice']}", headers=stack.auth("auditor")
        )
    ).json()
    assert [e["type"] for e in by_actor["items"]] == ["approval.decided"]
    assert (await stack.http.get("/v1/audit/events", headers=stack.auth("trigger"))).status_code == 403
    first = (await stack.http.get("/v1/audit/events?limit=2", headers=stack.auth("auditor"))).json()
    second = (
        await stack.http.get(
            f"/v1/audit/events?limit=2&cursor={first['next_cursor']}", headers=stack.auth("auditor")
        )
    ).json()
    assert first["items"][-1]["seq"] < second["items"][0]["seq"]
