"""The ``shipment_exceptions`` agent: delay rules on the demo data, its tools, and runs end to end."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from agents.catalog import get_agent
from agents.shipment_exceptions.agent import SPEC
from agents.shipment_exceptions.offline import assess, credit_amount, customer_message, faster_option
from approvals.policy import load_policy
from countersign.settings import Settings
from tests.agents.offline import calls, play
from tests.conftest import Stack
from tools.business import BusinessStore
from tools.records import CustomerNotification, Shipment, ShipmentRebooking, ShippingCredit
from tools.registry import ToolContext, get_tool

WRITES = ("notify_customer", "rebook_shipment", "issue_shipping_credit")

# --- Helpers ---------------------------------------------------------------------------------------------


async def _tool(store: BusinessStore, name: str, args: dict[str, Any], key: str = "k") -> dict[str, Any]:
    tool = get_tool(name)
    assert tool is not None
    ctx = ToolContext(
        tenant_id="acme", caller="test", run_id="run-1", agent=SPEC.name, idempotency_key=key, store=store
    )
    return await tool.run(args, ctx)


async def drive(
    store: BusinessStore, shipment_id: str, run_id: str = "run-1"
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """The playbook in process against the demo data: (output, calls made)."""
    out, messages = await play(SPEC, store, {"shipment_id": shipment_id}, run_id)
    return out, calls(messages)


async def _read(store: BusinessStore, shipment_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    shipment = await _tool(store, "get_shipment", {"shipment_id": shipment_id})
    events = (await _tool(store, "get_shipment_events", {"shipment_id": shipment_id}))["events"]
    return shipment, events


async def _rows(store: BusinessStore, model: Any, shipment_id: str) -> list[Any]:
    async with store.sessions() as s:
        return list(await s.scalars(select(model).where(model.shipment_id == shipment_id)))


# --- The exception and its delay -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shipment_id", "exception", "delay", "eta", "delivered", "codes"),
    [
        ("SH-3001", True, 5, "2026-11-08", None, ["DELAY_WEATHER"]),
        ("SH-3002", False, 0, "2026-11-04", None, []),  # on time
        ("SH-3003", False, -1, None, "2026-10-29", []),  # a day early
        ("SH-3010", False, 0, None, "2026-10-31", ["DELAY_WEATHER"]),  # the weather delay was made up
        ("SH-3005", True, None, None, None, ["CUSTOMS_HOLD"]),  # held, no new date yet
        ("SH-3006", True, 6, "2026-11-04", None, ["CUSTOMS_HOLD"]),  # released with a new date
        ("SH-3007", True, 5, None, "2026-10-29", ["DELAY_MECHANICAL"]),  # delivered late
        ("SH-3009", True, 4, "2026-11-04", None, ["MISSED_CONNECTION"]),  # unknown, then a new date
        ("SH-3016", True, 4, "2026-11-03", None, ["DELAY_WEATHER", "MISSED_CONNECTION"]),
        ("SH-3023", False, 0, "2026-11-04", None, []),  # no scan events yet
    ],
)
async def test_delay_from_events(
    store: BusinessStore,
    shipment_id: str,
    exception: bool,
    delay: int | None,
    eta: str | None,
    delivered: str | None,
    codes: list[str],
) -> None:
    a = assess(*await _read(store, shipment_id))
    assert (a.exception, a.delay_days, a.cause_codes) == (exception, delay, codes)
    assert a.eta == (dt.date.fromisoformat(eta) if eta else None)
    assert a.delivered_on == (dt.date.fromisoformat(delivered) if delivered else None)


async def test_example_assessment_with_impact(store: BusinessStore) -> None:
    shipment, events = await _read(store, "SH-3001")
    emails = (await _tool(store, "get_customer_emails", {"shipment_id": "SH-3001"}))["emails"]
    a = assess(shipment, events, emails)
    assert (a.cause, a.impact) == ("severe weather", "high")
    assert a.impact_note is not None
    assert "production line stops" in a.impact_note
    assert assess(shipment, events).impact == "medium"  # without the e-mail: over 3 days late


def test_an_exception_without_a_date_makes_it_unknown_until_one_comes() -> None:
    shipment = {"shipment_id": "SH-1", "promised_date": "2026-11-01"}
    held: list[dict[str, Any]] = [
        {"at": "2026-10-30T10:00:00+00:00", "code": "CUSTOMS_HOLD", "new_eta": None}
    ]
    assert assess(shipment, held).delay_days is None
    cleared: list[dict[str, Any]] = [
        *held,
        {"at": "2026-11-02T10:00:00+00:00", "code": "CUSTOMS_CLEARED", "new_eta": "2026-11-03"},
    ]
    assert assess(shipment, cleared).delay_days == 2
    # Events are taken in time order, whatever order they arrive in.
    assert assess(shipment, list(reversed(cleared))).delay_days == 2


def test_remedy_rules() -> None:
    assert credit_amount(150.0, 4) == 60.0
    assert credit_amount(520.0, 5) == 260.0
    assert credit_amount(2600.0, 12) == 1300.0  # capped at half the shipping cost
    options = [
        {"carrier": "Slow", "service": "s", "eta": "2026-11-06", "extra_cost": 10.0},
        {"carrier": "Dear", "service": "s", "eta": "2026-11-04", "extra_cost": 300.0},
        {"carrier": "Cheap", "service": "s", "eta": "2026-11-04", "extra_cost": 100.0},
    ]
    best = faster_option(options, dt.date(2026, 11, 8))
    assert best is not None
    assert best["carrier"] == "Cheap"
    assert faster_option(options, dt.date(2026, 11, 4)) is None  # nothing strictly faster
    assert faster_option(options, None) is None


# --- The playbook on the demo data -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shipment_id", "writes"),
    [
        (
            "SH-3001",
            [
                ("notify_customer", None),
                ("rebook_shipment", {"carrier": "SkyBridge Air Cargo", "extra_cost": 145.0}),
            ],
        ),
        ("SH-3004", [("notify_customer", None)]),  # 2 days late: tell, nothing more
        ("SH-3011", [("notify_customer", None)]),  # exactly 3 days: not more than 3
        ("SH-3005", [("notify_customer", None)]),  # date unknown: no remedy yet
        (
            "SH-3007",
            [
                ("notify_customer", None),
                (
                    "issue_shipping_credit",
                    {"amount": 260.0, "reason": "Delivered 5 days late because of a vehicle breakdown."},
                ),
            ],
        ),
        (
            "SH-3008",
            [
                ("notify_customer", None),
                ("rebook_shipment", {"carrier": "Summit Expedite", "extra_cost": 380.0}),
            ],
        ),
        (
            "SH-3009",
            [
                ("notify_customer", None),  # the only quote is slower: credit instead
                (
                    "issue_shipping_credit",
                    {"amount": 60.0, "reason": "4 days late because of a missed connection at a hub."},
                ),
            ],
        ),
        ("SH-3002", []),  # on time
        ("SH-3010", []),  # made up for the exception
        ("SH-3023", []),  # no events yet
    ],
)
async def test_playbook_actions(
    store: BusinessStore, shipment_id: str, writes: list[tuple[str, dict[str, Any] | None]]
) -> None:
    out, called = await drive(store, shipment_id)
    made = [(name, args) for name, args in called if name in WRITES]
    assert [name for name, _ in made] == [name for name, _ in writes]
    for (_, args), (_, expected) in zip(made, writes, strict=True):
        if expected is not None:
            assert args == {"shipment_id": shipment_id, **expected}
    assert [a["outcome"] for a in out["actions_proposed"]] == ["done"] * len(writes)
    assert out["notification"]["status"] == ("done" if writes else "not_needed")
    if not writes:
        assert len(await _rows(store, CustomerNotification, shipment_id)) == 0
        assert "get_customer_emails" not in out["tools_used"]


async def test_on_time_output(store: BusinessStore) -> None:
    out, _ = await drive(store, "SH-3002")
    assert (out["exception"], out["delay_days"], out["cause"]) == (False, 0, None)
    assert "No exception; the customer was not contacted." in out["summary"]


async def test_example_output_and_message(store: BusinessStore) -> None:
    out, called = await drive(store, "SH-3001")
    assert [name for name, _ in called] == [
        "get_shipment",
        "get_shipment_events",
        "get_customer_emails",
        "get_rebooking_options",
        "notify_customer",
        "rebook_shipment",
    ]
    assert {k: out[k] for k in ("exception", "cause", "eta", "delay_days", "impact")} == {
        "exception": True,
        "cause": "severe weather",
        "eta": "2026-11-08",
        "delay_days": 5,
        "impact": "high",
    }
    message = out["notification"]["message"]
    assert message.startswith("Hello Arjun,")
    assert "5 days late because of severe weather" in message
    assert "8 Nov 2026" in message
    assert "will confirm any change" in message  # promises nothing a person has not signed off
    [row] = await _rows(store, CustomerNotification, "SH-3001")
    assert (row.to_email, row.body) == ("supply@kestrel-robotics.example", message)
    [rebooking] = await _rows(store, ShipmentRebooking, "SH-3001")
    assert (rebooking.carrier, rebooking.extra_cost, rebooking.new_eta) == (
        "SkyBridge Air Cargo",
        145.0,
        dt.date(2026, 11, 4),
    )


async def test_a_notified_shipment_is_left_alone(store: BusinessStore) -> None:
    out, called = await drive(store, "SH-3012")  # seeded as already notified
    assert [name for name, _ in called] == ["get_shipment"]
    assert out["already_notified"] is True
    await drive(store, "SH-3004", run_id="run-1")
    _, again = await drive(store, "SH-3004", run_id="run-2")
    assert [name for name, _ in again] == ["get_shipment"]
    assert len(await _rows(store, CustomerNotification, "SH-3004")) == 1


async def test_messages_say_what_the_customer_can_do(store: BusinessStore) -> None:
    shipment, events = await _read(store, "SH-3005")
    customs = customer_message(shipment, assess(shipment, events), [], None)
    assert "do not have a new delivery date yet" in customs
    assert "Customs may need documents" in customs
    shipment, events = await _read(store, "SH-3013")
    emails = (await _tool(store, "get_customer_emails", {"shipment_id": "SH-3013"}))["emails"]
    assert "Thank you for the address details" in customer_message(
        shipment, assess(shipment, events), emails, None
    )
    assert "Please reply with the full delivery address" in customer_message(
        shipment, assess(shipment, events), [], None
    )


# --- Tools -----------------------------------------------------------------------------------------------


async def test_rebooking_takes_the_quote_not_the_request(store: BusinessStore) -> None:
    # A model claiming a cheaper price (to pass the policy's auto-allow) is refused.
    lie = await _tool(
        store,
        "rebook_shipment",
        {"shipment_id": "SH-3008", "carrier": "Summit Expedite", "extra_cost": 0.0},
        key="a",
    )
    assert lie == {"rebooked": False, "error": "the Summit Expedite quote costs 380.00 extra, not 0.00"}
    unknown = await _tool(
        store, "rebook_shipment", {"shipment_id": "SH-3008", "carrier": "Nobody", "extra_cost": 1.0}, key="b"
    )
    assert unknown["rebooked"] is False
    delivered = await _tool(
        store,
        "rebook_shipment",
        {"shipment_id": "SH-3007", "carrier": "Summit Expedite", "extra_cost": 1.0},
        key="c",
    )
    assert delivered == {"rebooked": False, "error": "shipment SH-3007 is already delivered"}
    assert await _rows(store, ShipmentRebooking, "SH-3008") == []


async def test_writes_happen_once_per_idempotency_key(store: BusinessStore) -> None:
    args = {"shipment_id": "SH-3020", "carrier": "Summit Expedite", "extra_cost": 200.0}
    first = await _tool(store, "rebook_shipment", args, key="approval-1")
    assert first == await _tool(store, "rebook_shipment", args, key="approval-1")
    assert len(await _rows(store, ShipmentRebooking, "SH-3020")) == 1
    async with store.sessions() as s:
        shipment = await s.get(Shipment, {"tenant_id": "acme", "id": "SH-3020"})
        assert shipment is not None
        assert (shipment.carrier, shipment.status) == ("Summit Expedite", "rebooked")
    note = {"shipment_id": "SH-3020", "message": "Hello"}
    assert (await _tool(store, "notify_customer", note, key="n"))["sent"] is True
    await _tool(store, "notify_customer", note, key="n")
    assert len(await _rows(store, CustomerNotification, "SH-3020")) == 1


async def test_credits_never_exceed_the_shipping_cost(store: BusinessStore) -> None:
    credit = {"shipment_id": "SH-3009", "amount": 100.0, "reason": "late"}
    assert (await _tool(store, "issue_shipping_credit", credit, key="c1"))["issued"] is True
    second = await _tool(store, "issue_shipping_credit", credit, key="c2")
    assert second == {
        "issued": False,
        "error": "amount 100.00 exceeds the 50.00 of shipping cost not yet credited",
    }
    assert [c.amount for c in await _rows(store, ShippingCredit, "SH-3009")] == [100.0]


# --- Contract --------------------------------------------------------------------------------------------


def test_spec_is_registered_with_exactly_its_tools() -> None:
    assert get_agent("shipment_exceptions") is SPEC
    SPEC.input_model.model_validate(SPEC.example_input)
    assert sorted(SPEC.tools()) == [
        "get_customer_emails",
        "get_rebooking_options",
        "get_shipment",
        "get_shipment_events",
        "issue_shipping_credit",
        "notify_customer",
        "rebook_shipment",
    ]


def test_demo_policy_gates_the_writes() -> None:
    settings = Settings()
    policy = load_policy(settings.policy_path, settings.known_roles())

    def outcome(tool: str, args: dict[str, Any]) -> str:
        kind = SPEC.tools()[tool].kind
        return policy.evaluate(
            tool=tool, kind=kind, args=args, agent=SPEC.name, tenant="acme", caller="t"
        ).outcome

    assert outcome("notify_customer", {"shipment_id": "SH-3001", "message": "x"}) == "require_approval"
    assert outcome("issue_shipping_credit", {"shipment_id": "SH-3007", "amount": 1.0, "reason": "x"}) == (
        "require_approval"
    )
    assert (
        outcome("rebook_shipment", {"shipment_id": "SH-3001", "carrier": "x", "extra_cost": 145.0}) == "allow"
    )
    assert (
        outcome("rebook_shipment", {"shipment_id": "SH-3001", "carrier": "x", "extra_cost": 200.0}) == "allow"
    )
    assert outcome("rebook_shipment", {"shipment_id": "SH-3008", "carrier": "x", "extra_cost": 380.0}) == (
        "require_approval"
    )
    for read in ("get_shipment", "get_shipment_events", "get_customer_emails", "get_rebooking_options"):
        assert outcome(read, {"shipment_id": "SH-3001"}) == "allow"


# --- End to end through Temporal -------------------------------------------------------------------------


async def _decide(stack: Stack, item: dict[str, Any], key: str, body: dict[str, Any]) -> None:
    r = await stack.http.post(f"/v1/approvals/{item['id']}/decisions", json=body, headers=stack.auth(key))
    assert r.status_code == 201, r.text


async def _pending_notification(stack: Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    run = await stack.start("shipment_exceptions", SPEC.example_input)
    [item] = await stack.pending(run["id"])
    assert item["tool"] == "notify_customer"
    assert set(item["required_roles"]) == {"approver:logistics", "approver:support"}
    assert "5 days late because of severe weather" in item["arguments"]["message"]
    assert "impact high" in item["reason"]
    assert await _rows(stack.store, CustomerNotification, "SH-3001") == []
    return run, item


async def test_e2e_rejected_notification_is_not_sent(stack: Stack) -> None:
    run, item = await _pending_notification(stack)
    await _decide(
        stack,
        item,
        "alice",
        {
            "action": "reject",
            "arguments_hash": item["arguments_hash"],
            "reason": "ETA is wrong, check with the carrier first",
        },
    )
    done = await stack.result(run["id"])
    assert done["status"] == "completed", done
    out = done["output"]
    assert out["notification"]["status"] == "rejected"
    assert "ETA is wrong" in out["notification"]["detail"]
    assert [(a["tool"], a["outcome"]) for a in out["actions_proposed"]] == [("notify_customer", "rejected")]
    assert "The customer was not notified" in out["summary"]
    assert "left to a person" in out["summary"]
    assert await _rows(stack.store, CustomerNotification, "SH-3001") == []
    assert await _rows(stack.store, ShipmentRebooking, "SH-3001") == []


async def test_e2e_edited_notification_sends_exactly_the_edit(stack: Stack) -> None:
    run, item = await _pending_notification(stack)
    edited = {
        "shipment_id": "SH-3001",
        "message": "Hello Arjun,\n\nYour motors are held by a blizzard in Omaha; we are flying them "
        "out and will call you today.\n\nShipment Care",
    }
    await _decide(
        stack,
        item,
        "alice",
        {"action": "edit", "arguments_hash": item["arguments_hash"], "arguments": edited},
    )
    done = await stack.result(run["id"])
    assert done["status"] == "completed", done
    out = done["output"]
    assert out["notification"]["message"] == edited["message"]
    assert [(a["tool"], a["outcome"]) for a in out["actions_proposed"]] == [
        ("notify_customer", "done"),
        ("rebook_shipment", "done"),
    ]
    [row] = await _rows(stack.store, CustomerNotification, "SH-3001")
    assert row.body == edited["message"]
    [rebooking] = await _rows(stack.store, ShipmentRebooking, "SH-3001")  # 145 extra: allowed without asking
    assert (rebooking.carrier, rebooking.extra_cost) == ("SkyBridge Air Cargo", 145.0)


async def test_e2e_late_delivery_credit_needs_its_own_approval(stack: Stack) -> None:
    run = await stack.start("shipment_exceptions", {"shipment_id": "SH-3007"})
    [note] = await stack.pending(run["id"])
    assert note["tool"] == "notify_customer"
    await _decide(stack, note, "logistics", {"action": "approve", "arguments_hash": note["arguments_hash"]})
    [credit] = await stack.pending(run["id"])
    assert credit["tool"] == "issue_shipping_credit"
    assert credit["arguments"] == {
        "shipment_id": "SH-3007",
        "amount": 260.0,
        "reason": "Delivered 5 days late because of a vehicle breakdown.",
    }
    assert set(credit["required_roles"]) == {"approver:logistics", "approver:finance"}
    await _decide(stack, credit, "carol", {"action": "approve", "arguments_hash": credit["arguments_hash"]})
    done = await stack.result(run["id"])
    assert done["status"] == "completed", done
    assert "Shipping credit of 260.00 issued." in done["output"]["summary"]
    assert [c.amount for c in await _rows(stack.store, ShippingCredit, "SH-3007")] == [260.0]
    assert len(await _rows(stack.store, CustomerNotification, "SH-3007")) == 1
