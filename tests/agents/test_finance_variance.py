"""The ``finance_variance`` agent: its tools on the demo month, the playbook's answers, a run end to end."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from agents.catalog import get_agent
from agents.finance_variance.agent import SPEC
from agents.manifest import manifest
from tests.agents.offline import calls, play
from tests.conftest import Stack
from tools.business import BusinessStore
from tools.finance.records import Reclassification, VarianceFlag
from tools.registry import ToolContext, get_tool

EXAMPLE = {"period": "2026-10", "cost_center": "CC-410"}


def _ctx(store: BusinessStore, key: str, tenant: str = "acme") -> ToolContext:
    return ToolContext(
        tenant_id=tenant, caller="test", run_id="run-1", agent=SPEC.name, idempotency_key=key, store=store
    )


async def _tool(store: BusinessStore, name: str, args: dict[str, Any], key: str = "k") -> dict[str, Any]:
    tool = get_tool(name)
    assert tool is not None
    return await tool.run(args, _ctx(store, key))


async def drive(store: BusinessStore, payload: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The playbook in process against the demo data: (output, tools called in order)."""
    out, messages = await play(SPEC, store, payload)
    return out, [name for name, _ in calls(messages)]


async def test_the_variance_report_of_the_demo_month(store: BusinessStore) -> None:
    report = await _tool(store, "get_variance_report", EXAMPLE)
    by = {a["account"]: (a["budget"], a["actual"], a["variance"]) for a in report["accounts"]}
    assert by == {
        "6100": (12_000.0, 19_800.0, 7_800.0),
        "6200": (30_000.0, 18_500.0, -11_500.0),
        "6300": (4_000.0, 9_350.0, 5_350.0),
        "6400": (2_000.0, 2_100.0, 100.0),
    }
    other = await _tool(store, "get_variance_report", {"period": "2026-09", "cost_center": "CC-410"})
    assert other["found"] is False


async def test_each_material_variance_is_explained_with_the_sources_it_read(store: BusinessStore) -> None:
    out, called = await drive(store, EXAMPLE)
    assert SPEC.check_output(out) is None
    causes = {v["account"]: (v["cause"], v["sources"], v["action"]) for v in out["variances"]}
    assert causes == {
        "6100": ("misposting", ["GL-41003", "INV-88120"], "reclassification posted"),
        "6200": ("timing", ["GL-41010", "INV-88133"], None),
        "6300": ("unexplained", ["GL-41020", "GL-41021"], "flagged to a controller"),
    }  # training (+100, 5%) is under the threshold
    assert out["escalated"] is True and out["unread_sources"] == []
    assert called[0] == "get_variance_report" and called.count("propose_reclassification") == 1
    async with store.sessions() as s:
        [reclass] = list(await s.scalars(select(Reclassification)))
        [flag] = list(await s.scalars(select(VarianceFlag)))
    assert (reclass.ledger_line_id, reclass.to_cost_center, reclass.amount) == ("GL-41003", "CC-420", 7_800.0)
    assert (flag.account, flag.variance) == ("6300", 5_350.0)


async def test_a_reclassification_cannot_move_more_than_the_line(store: BusinessStore) -> None:
    args = {
        "ledger_line_id": "GL-41003",
        "to_cost_center": "CC-420",
        "to_account": "6100",
        "reason": "misposted",
    }
    first = await _tool(store, "propose_reclassification", args | {"amount": 5_000.0}, key="a")
    assert first["posted"] is True
    again = await _tool(store, "propose_reclassification", args | {"amount": 5_000.0}, key="b")
    assert again == {"posted": False, "error": "amount 5000.00 exceeds the 2800.00 left on GL-41003"}
    assert await _tool(store, "propose_reclassification", args | {"amount": 5_000.0}, key="a") == first


async def test_an_unknown_cost_center_is_reported_not_guessed(store: BusinessStore) -> None:
    out, called = await drive(store, {"period": "2026-10", "cost_center": "CC-999"})
    assert called == ["get_variance_report"]
    assert out["variances"] == [] and "no budget or ledger data" in out["summary"]


def test_the_agent_is_discovered_with_an_owner() -> None:
    spec = get_agent("finance_variance")
    assert spec is SPEC
    agent = manifest("finance_variance")
    assert agent is not None
    described = agent.describe()
    assert described["owner"]["role"] == "approver:finance"
    assert {t["name"] for t in described["tools"]} == {
        "get_variance_report",
        "get_ledger_lines",
        "get_vendor_invoice",
        "list_vendor_invoices",
        "propose_reclassification",
        "flag_variance",
    }


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_example_pauses_for_two_finance_approvers_then_completes(stack: Stack, db_url: str) -> None:
    run = await stack.start("finance_variance", EXAMPLE)
    [item] = await stack.pending(run["id"])
    assert (item["tool"], item["quorum"], item["rule"]) == (
        "propose_reclassification",
        2,
        "reclass-large-two-approvers",
    )
    first = await stack.http.post(
        f"/v1/approvals/{item['id']}/decisions",
        json={"action": "approve", "arguments_hash": item["arguments_hash"]},
        headers=stack.auth("alice"),
    )
    assert first.status_code == 201 and first.json()["request_status"] == "pending"
    second = await stack.http.post(
        f"/v1/approvals/{item['id']}/decisions",
        json={"action": "approve", "arguments_hash": item["arguments_hash"]},
        headers=stack.auth("bob"),
    )
    assert second.status_code == 201 and second.json()["request_status"] == "approved"
    done = await stack.result(run["id"])
    assert done["status"] == "completed"
    causes = [v["cause"] for v in done["output"]["variances"]]
    assert causes == ["misposting", "timing", "unexplained"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_rejected_reclassification_says_why_it_was_not_done(stack: Stack, db_url: str) -> None:
    run = await stack.start("finance_variance", EXAMPLE)
    [item] = await stack.pending(run["id"])
    r = await stack.http.post(
        f"/v1/approvals/{item['id']}/decisions",
        json={"action": "reject", "arguments_hash": item["arguments_hash"], "reason": "wait for the audit"},
        headers=stack.auth("alice"),
    )
    assert r.status_code == 201
    done = await stack.result(run["id"])
    [misposting] = [v for v in done["output"]["variances"] if v["cause"] == "misposting"]
    assert misposting["action"].startswith("not done: Rejected by a person: wait for the audit")
