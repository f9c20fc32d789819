"""The ``claims_triage`` agent: extraction and triage rules on the demo data, its tools, runs end to end."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from agents.catalog import get_agent
from agents.claims_triage.agent import SPEC
from agents.claims_triage.offline import (
    ExtractedClaim,
    coverage_problems,
    extract_claim,
    queue_for,
    severity_for,
)
from approvals.policy import load_policy
from countersign.settings import Settings
from tests.agents.offline import calls, play
from tests.conftest import Stack
from tools.business import BusinessStore, Effect
from tools.records import ClaimReserve, Fnol, seed_records
from tools.registry import ToolContext, get_tool

# --- Helpers ------------------------------------------------------------------------------------------------


def _ctx(store: BusinessStore, key: str, run_id: str = "run-1") -> ToolContext:
    return ToolContext(
        tenant_id="acme", caller="test", run_id=run_id, agent=SPEC.name, idempotency_key=key, store=store
    )


async def _tool(store: BusinessStore, name: str, args: dict[str, Any], key: str = "k") -> dict[str, Any]:
    tool = get_tool(name)
    assert tool is not None
    return await tool.run(args, _ctx(store, key))


async def drive(
    store: BusinessStore, claim_id: str, run_id: str = "run-1"
) -> tuple[dict[str, Any], list[str]]:
    """The playbook in process against the demo data: (output, tools called in order)."""
    out, messages = await play(SPEC, store, {"claim_id": claim_id}, run_id)
    return out, [name for name, _ in calls(messages)]


async def _fnol(store: BusinessStore, claim_id: str) -> dict[str, Any]:
    return await _tool(store, "get_fnol", {"claim_id": claim_id})


async def _reserves(store: BusinessStore, claim_id: str) -> list[ClaimReserve]:
    async with store.sessions() as s:
        return list(await s.scalars(select(ClaimReserve).where(ClaimReserve.claim_id == claim_id)))


# --- Extraction ---------------------------------------------------------------------------------------------


async def test_extracts_the_routine_example(store: BusinessStore) -> None:
    claim = extract_claim(await _fnol(store, "FNOL-2001"))
    assert claim == ExtractedClaim(
        policy_number="HO-100201",
        loss_date=dt.date(2026, 10, 14),
        loss_type="water_damage",
        estimated_amount=6200.0,
        amount_source="estimate_dryright.pdf",
        injuries=False,
        notes=[],
    )


@pytest.mark.parametrize(
    ("claim_id", "expected", "note"),
    [
        # A police report mentions an injured passenger although the insured says nobody was hurt.
        ("FNOL-2007", {"injuries": True, "estimated_amount": 4100.0}, "contradictory injury statements"),
        # The claimant's guess loses to the contractor's documented total, and the gap is noted.
        (
            "FNOL-2008",
            {"estimated_amount": 12850.0, "amount_source": "contractor_estimate.pdf"},
            "states 1,500.00",
        ),
        ("FNOL-2019", {"estimated_amount": 3700.0, "loss_type": "storm"}, None),  # "$500" is the deductible
        ("FNOL-2027", {"estimated_amount": 18500.0, "loss_date": dt.date(2026, 11, 1)}, None),  # "$18.5k"
        ("FNOL-2009", {"loss_type": "flood"}, None),  # a river, not a pipe
        ("FNOL-2013", {"loss_type": "theft"}, None),  # the smashed window is part of a break-in
        ("FNOL-2006", {"estimated_amount": None, "amount_source": None}, None),  # "do not know the cost yet"
        ("FNOL-2021", {"loss_date": None}, None),  # "sometime last week"
        ("FNOL-2016", {"policy_number": None}, None),
        ("FNOL-2014", {"injuries": True, "estimated_amount": 185000.0, "loss_type": "fire"}, None),
        ("FNOL-2023", {"injuries": True}, "contradictory injury statements"),  # a third party's back pain
    ],
)
async def test_extraction_edge_cases(
    store: BusinessStore, claim_id: str, expected: dict[str, Any], note: str | None
) -> None:
    claim = extract_claim(await _fnol(store, claim_id))
    assert {k: getattr(claim, k) for k in expected} == expected
    if note is None:
        assert claim.notes == []
    else:
        assert any(note in n for n in claim.notes), claim.notes


def test_extraction_reads_day_first_and_abbreviated_dates() -> None:
    claim = extract_claim(
        {"description": "Policy AU-200301. Hail storm on 3 Sept 2026, quote USD 1,200.", "attachments": []}
    )
    assert (claim.loss_date, claim.estimated_amount, claim.loss_type) == (
        dt.date(2026, 9, 3),
        1200.0,
        "storm",
    )


# --- Decisions ----------------------------------------------------------------------------------------------


def test_severity_and_queue_thresholds() -> None:
    assert [severity_for(a, False) for a in (4999.99, 5000, 24999.99, 25000)] == [
        "low",
        "medium",
        "medium",
        "high",
    ]
    assert severity_for(100, True) == "high"
    assert queue_for("high", True, "home") == "bodily_injury"
    assert queue_for("high", False, "auto") == "major_loss"
    assert queue_for("low", False, "auto") == "auto_physical_damage"
    assert queue_for("low", False, "home") == "fast_track"
    assert queue_for("medium", False, "commercial") == "property"


@pytest.mark.parametrize(
    ("loss_date", "active"),
    [("2026-01-31", False), ("2026-02-01", True), ("2026-09-30", True), ("2026-10-01", False)],
)
def test_policy_period_boundaries(loss_date: str, active: bool) -> None:
    policy = {
        "found": True,
        "policy_number": "HO-1",
        "coverages": ["fire"],
        "effective_from": "2026-02-01",
        "effective_to": "2027-01-31",
        "terminated_on": "2026-10-01",
        "status": "cancelled",
    }
    claim = ExtractedClaim(
        policy_number="HO-1",
        loss_date=dt.date.fromisoformat(loss_date),
        loss_type="fire",
        estimated_amount=1000,
    )
    assert (coverage_problems(claim, policy) == []) is active


@pytest.mark.parametrize(
    ("claim_id", "queue", "severity", "reserve"),
    [
        ("FNOL-2001", "property", "medium", 5700.0),  # the example: 6,200 less the 500 deductible
        ("FNOL-2002", "major_loss", "high", 37500.0),
        ("FNOL-2003", "bodily_injury", "high", 7650.0),
        ("FNOL-2012", "auto_physical_damage", "low", 0.0),  # the estimate is below the deductible
        ("FNOL-2018", "fast_track", "low", 450.0),
        ("FNOL-2020", "fast_track", "low", 2550.0),  # the policy was cancelled, but after the loss
        ("FNOL-2022", "major_loss", "high", 26400.0),
    ],
)
async def test_routes_and_reserves_covered_claims(
    store: BusinessStore, claim_id: str, queue: str, severity: str, reserve: float
) -> None:
    out, called = await drive(store, claim_id)
    assert called == ["get_fnol", "get_policy", "route_claim", "set_claim_reserve"]
    assert (out["routed"], out["flagged"], out["queue"], out["severity"]) == (True, False, queue, severity)
    assert out["reserve"]["amount"] == reserve
    assert out["reserve"]["status"] == "set"
    assert [r.amount for r in await _reserves(store, claim_id)] == [reserve]


@pytest.mark.parametrize(
    ("claim_id", "reason"),
    [
        ("FNOL-2004", "policy HO-100204 was not active on 2026-10-05: lapsed on 2026-09-01"),
        ("FNOL-2010", "policy HO-100208 was not active on 2026-10-10: it starts on 2026-10-15"),
        ("FNOL-2011", "policy HO-100203 was not active on 2026-10-02: it ended on 2026-05-31"),
        ("FNOL-2026", "policy AU-200303 was not active on 2026-10-13: cancelled on 2026-07-15"),
        ("FNOL-2005", "loss type collision is not covered by policy AU-200302 (covers: liability)"),
        ("FNOL-2009", "loss type flood is not covered by policy HO-100207"),
        ("FNOL-2006", "missing estimated amount"),
        ("FNOL-2021", "missing loss date"),
        ("FNOL-2017", "policy HO-199999 not found"),
    ],
)
async def test_flags_what_it_cannot_route(store: BusinessStore, claim_id: str, reason: str) -> None:
    out, called = await drive(store, claim_id)
    assert called == ["get_fnol", "get_policy", "flag_claim"]
    assert out["flagged"] is True
    assert reason in out["flag_reason"]
    assert (out["routed"], out["queue"], out["reserve"]) == (False, None, None)
    async with store.sessions() as s:
        fnol = await s.get(Fnol, {"tenant_id": "acme", "id": claim_id})
        assert fnol is not None
        assert (fnol.status, fnol.queue) == ("flagged", None)
    assert await _reserves(store, claim_id) == []


async def test_missing_policy_number_is_flagged_without_a_lookup(store: BusinessStore) -> None:
    out, called = await drive(store, "FNOL-2016")
    assert called == ["get_fnol", "flag_claim"]
    assert out["flag_reason"] == "missing policy number"


async def test_a_triaged_claim_is_left_alone(store: BusinessStore) -> None:
    first, _ = await drive(store, "FNOL-2001", run_id="run-1")
    again, called = await drive(store, "FNOL-2001", run_id="run-2")
    assert first["routed"] is True
    assert called == ["get_fnol"]
    assert again["already_triaged"] is True
    assert "already triaged" in again["summary"]
    assert len(await _reserves(store, "FNOL-2001")) == 1


async def test_unknown_claim(store: BusinessStore) -> None:
    out, called = await drive(store, "FNOL-9999")
    assert called == ["get_fnol"]
    assert "could not find" in out["summary"]


# --- Tools --------------------------------------------------------------------------------------------------


async def test_reserve_is_set_once_per_idempotency_key(store: BusinessStore) -> None:
    await _tool(store, "route_claim", {"claim_id": "FNOL-2001", "queue": "property", "severity": "medium"})
    args = {"claim_id": "FNOL-2001", "amount": 5700.0, "injuries": False}
    first = await _tool(store, "set_claim_reserve", args, key="approval-1")
    retry = await _tool(store, "set_claim_reserve", args, key="approval-1")
    assert first == retry
    assert first["reserve_set"] is True
    assert len(await _reserves(store, "FNOL-2001")) == 1
    async with store.sessions() as s:
        assert (
            await s.scalar(select(func.count()).select_from(Effect).where(Effect.tool == "set_claim_reserve"))
            == 1
        )


async def test_tools_refuse_what_the_claim_state_forbids(store: BusinessStore) -> None:
    unrouted = await _tool(
        store, "set_claim_reserve", {"claim_id": "FNOL-2002", "amount": 1.0, "injuries": False}
    )
    assert unrouted == {
        "reserve_set": False,
        "error": "claim FNOL-2002 is new: only routed claims get a reserve",
    }
    await _tool(store, "flag_claim", {"claim_id": "FNOL-2004", "reason": "policy lapsed"}, key="f")
    routed = await _tool(
        store, "route_claim", {"claim_id": "FNOL-2004", "queue": "property", "severity": "low"}, key="r"
    )
    assert routed["routed"] is False
    assert "flagged for review" in routed["error"]


async def test_seeding_again_keeps_what_agents_changed(store: BusinessStore) -> None:
    await drive(store, "FNOL-2004")
    await seed_records(store, "acme")
    async with store.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Fnol)) == 28
        fnol = await s.get(Fnol, {"tenant_id": "acme", "id": "FNOL-2004"})
        assert fnol is not None
        assert fnol.status == "flagged"


# --- Contract -----------------------------------------------------------------------------------------------


def test_spec_is_registered_with_exactly_its_tools() -> None:
    assert get_agent("claims_triage") is SPEC
    SPEC.input_model.model_validate(SPEC.example_input)
    assert sorted(SPEC.tools()) == [
        "flag_claim",
        "get_fnol",
        "get_policy",
        "route_claim",
        "set_claim_reserve",
    ]
    assert {t.name: t.kind for t in SPEC.tools().values() if t.kind == "write"} == {
        "flag_claim": "write",
        "route_claim": "write",
        "set_claim_reserve": "write",
    }


@pytest.mark.parametrize(
    ("args", "outcome"),
    [
        ({"claim_id": "FNOL-2001", "amount": 5700.0, "injuries": False}, "allow"),
        ({"claim_id": "FNOL-2002", "amount": 37500.0, "injuries": False}, "require_approval"),
        ({"claim_id": "FNOL-2003", "amount": 7650.0, "injuries": True}, "require_approval"),
    ],
)
def test_demo_policy_gates_reserves_as_the_issue_says(args: dict[str, Any], outcome: str) -> None:
    settings = Settings()
    policy = load_policy(settings.policy_path, settings.known_roles())
    verdict = policy.evaluate(
        tool="set_claim_reserve", kind="write", args=args, agent=SPEC.name, tenant="acme", caller="test"
    )
    assert verdict.outcome == outcome
    if outcome == "require_approval":
        assert verdict.roles == ("approver:senior_adjuster",)
    for tool in ("route_claim", "flag_claim", "get_fnol", "get_policy"):
        kind = SPEC.tools()[tool].kind
        assert (
            policy.evaluate(
                tool=tool, kind=kind, args={}, agent=SPEC.name, tenant="acme", caller="test"
            ).outcome
            == "allow"
        )


# --- End to end through Temporal ----------------------------------------------------------------------------


async def _decide(stack: Stack, item: dict[str, Any], key: str, body: dict[str, Any]) -> None:
    r = await stack.http.post(f"/v1/approvals/{item['id']}/decisions", json=body, headers=stack.auth(key))
    assert r.status_code == 201, r.text


async def test_e2e_example_is_routed_and_reserved_without_approval(stack: Stack) -> None:
    run = await stack.start("claims_triage", SPEC.example_input)
    done = await stack.result(run["id"])
    assert done["status"] == "completed", done
    out = done["output"]
    assert (out["routed"], out["flagged"], out["queue"], out["severity"]) == (
        True,
        False,
        "property",
        "medium",
    )
    assert out["reserve"] == {
        "amount": 5700.0,
        "injuries": False,
        "status": "set",
        "detail": "estimate 6,200.00 less the 500.00 deductible",
    }
    assert out["extracted"]["policy_number"] == "HO-100201"
    assert "routed to the property queue" in out["summary"]
    assert [(r.amount, r.injuries) for r in await _reserves(stack.store, "FNOL-2001")] == [(5700.0, False)]


async def test_e2e_injury_reserve_waits_for_a_senior_adjuster(stack: Stack) -> None:
    run = await stack.start("claims_triage", {"claim_id": "FNOL-2003"})
    [item] = await stack.pending(run["id"])
    assert item["tool"] == "set_claim_reserve"
    assert item["required_roles"] == ["approver:senior_adjuster"]
    assert item["arguments"] == {"claim_id": "FNOL-2003", "amount": 7650.0, "injuries": True}
    assert "injuries are reported" in item["reason"]
    async with stack.store.sessions() as s:  # routed before the reserve was proposed; nothing reserved yet
        fnol = await s.get(Fnol, {"tenant_id": "acme", "id": "FNOL-2003"})
        assert fnol is not None
        assert (fnol.status, fnol.queue) == ("routed", "bodily_injury")
    assert await _reserves(stack.store, "FNOL-2003") == []
    await _decide(stack, item, "bob", {"action": "approve", "arguments_hash": item["arguments_hash"]})
    done = await stack.result(run["id"])
    assert done["status"] == "completed", done
    assert done["output"]["reserve"]["status"] == "set"
    assert [(r.amount, r.injuries) for r in await _reserves(stack.store, "FNOL-2003")] == [(7650.0, True)]


async def test_e2e_inactive_policy_is_flagged_and_never_routed(stack: Stack) -> None:
    run = await stack.start("claims_triage", {"claim_id": "FNOL-2004"})
    done = await stack.result(run["id"])
    assert done["status"] == "completed", done
    out = done["output"]
    assert out["flagged"] is True
    assert out["routed"] is False
    assert "not active on 2026-10-05" in out["flag_reason"]
    assert "route_claim" not in out["tools_used"]
    async with stack.store.sessions() as s:
        fnol = await s.get(Fnol, {"tenant_id": "acme", "id": "FNOL-2004"})
        assert fnol is not None
        assert (fnol.status, fnol.queue, fnol.severity) == ("flagged", None, None)
    assert await _reserves(stack.store, "FNOL-2004") == []
    r = await stack.http.get(f"/v1/approvals?run_id={run['id']}", headers=stack.auth("alice"))
    assert r.json()["items"] == []


async def test_e2e_agent_is_listed_with_its_example(stack: Stack) -> None:
    agents = {
        a["name"]: a for a in (await stack.http.get("/v1/agents", headers=stack.auth("trigger"))).json()
    }
    assert agents["claims_triage"]["example_input"] == {"claim_id": "FNOL-2001"}
    assert {t["name"] for t in agents["claims_triage"]["tools"]} == set(SPEC.tools())
