"""Every tool reads and writes only its run's tenant's records, whatever ids the model names."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from tools.business import BusinessBase, BusinessStore, Effect, Order
from tools.demo_data import seed
from tools.registry import ToolContext, get_tool, load_all

# One call per business tool, each naming a record that exists for tenant "acme" (the seeded demo data).
CALLS: dict[str, dict[str, Any]] = {
    "get_ticket": {"ticket_id": "T-1002"},
    "get_order": {"order_id": "O-5002"},
    "issue_refund": {"order_id": "O-5002", "amount": 10.0, "reason": "damaged on arrival"},
    "send_customer_reply": {"ticket_id": "T-1002", "body": "Refund issued."},
    "get_policy": {"policy_number": "HO-100201"},
    "get_fnol": {"claim_id": "FNOL-2001"},
    "route_claim": {"claim_id": "FNOL-2001", "queue": "property", "severity": "low"},
    "flag_claim": {"claim_id": "FNOL-2001", "reason": "probe from another tenant"},
    "set_claim_reserve": {"claim_id": "FNOL-2001", "amount": 100.0, "injuries": False},
    "get_shipment": {"shipment_id": "SH-3001"},
    "get_shipment_events": {"shipment_id": "SH-3001"},
    "get_rebooking_options": {"shipment_id": "SH-3001"},
    "get_customer_emails": {"shipment_id": "SH-3001"},
    "notify_customer": {"shipment_id": "SH-3001", "message": "Your shipment is delayed by a day."},
    "issue_shipping_credit": {"shipment_id": "SH-3001", "amount": 5.0, "reason": "late delivery"},
    "rebook_shipment": {"shipment_id": "SH-3001", "carrier": "Ridgeline Freight", "extra_cost": 60.0},
    "get_variance_report": {"period": "2026-10", "cost_center": "CC-410"},
    "get_ledger_lines": {"period": "2026-10", "cost_center": "CC-410", "account": "6100"},
    "list_vendor_invoices": {"cost_center": "CC-410", "service_period": "2026-10", "account": "6200"},
    "get_vendor_invoice": {"invoice_id": "INV-88120"},
    "propose_reclassification": {
        "ledger_line_id": "GL-41003",
        "to_cost_center": "CC-420",
        "to_account": "6100",
        "amount": 10.0,
        "reason": "probe from another tenant",
    },
}


def ctx(store: BusinessStore, tenant: str, key: str) -> ToolContext:
    return ToolContext(
        tenant_id=tenant,
        caller="test",
        run_id=f"run-{tenant}",
        agent="probe",
        idempotency_key=key,
        store=store,
    )


async def snapshot(store: BusinessStore, tenant: str) -> dict[str, list[dict[str, Any]]]:
    """Every business row of the tenant, column by column (the effects ledger aside)."""
    out: dict[str, list[dict[str, Any]]] = {}
    async with store.sessions() as s:
        for table in BusinessBase.metadata.sorted_tables:
            if table.name == "effects":
                continue
            rows = (await s.execute(select(table).where(table.c.tenant_id == tenant))).mappings()
            out[table.name] = sorted((dict(r) for r in rows), key=lambda r: str(r["id"]))
    return out


# Tools that look nothing up: they only write a record of the caller's own tenant.
NO_LOOKUP = {"flag_variance"}


def test_every_business_tool_is_probed() -> None:
    tools = {name for name, tool in load_all().items() if tool.scope != "knowledge:read"}
    assert tools == set(CALLS) | NO_LOOKUP


async def test_a_tool_that_looks_nothing_up_writes_for_its_own_tenant(store: BusinessStore) -> None:
    tool = get_tool("flag_variance")
    assert tool is not None
    args = {
        "period": "2026-10",
        "cost_center": "CC-410",
        "account": "6300",
        "variance": 1.0,
        "reason": "probe",
    }
    await tool.run(args, ctx(store, "globex", key="flag"))
    async with store.sessions() as s:
        rows = (await s.execute(text("SELECT tenant_id FROM variance_flags"))).scalars().all()
    assert rows == ["globex"]


def test_every_business_table_is_tenant_scoped() -> None:
    for table in BusinessBase.metadata.sorted_tables:
        assert "tenant_id" in table.c, table.name
        for fk in table.foreign_key_constraints:
            # A reference can only ever point at a record of the same tenant.
            assert fk.column_keys[0] == "tenant_id", (table.name, fk.column_keys)


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_another_tenant_finds_nothing_and_changes_nothing(store: BusinessStore, name: str) -> None:
    before = await snapshot(store, "acme")
    tool = get_tool(name)
    assert tool is not None
    result = await tool.run(CALLS[name], ctx(store, "globex", key=f"probe-{name}"))
    if tool.kind == "read":
        lists = [v for v in result.values() if isinstance(v, list)]
        assert result.get("found") is False or (lists and not any(lists)), result
    else:
        first = next(iter(result.values()))
        assert first is False and "not found" in result["error"], result
    assert await snapshot(store, "acme") == before


async def test_each_tenant_has_its_own_records_under_the_same_ids(store: BusinessStore) -> None:
    await seed(store, "globex")
    refund = get_tool("issue_refund")
    assert refund is not None
    args = {"order_id": "O-5002", "amount": 420.0, "reason": "dead on arrival"}
    done = await refund.run(args, ctx(store, "globex", key="globex-refund"))
    assert done["refunded"] is True
    # The whole order is refunded for globex; acme's order of the same id has nothing refunded.
    again = await refund.run({**args, "amount": 1.0}, ctx(store, "globex", key="globex-refund-2"))
    assert again == {"refunded": False, "error": "amount 1.0 exceeds refundable 0.0"}
    assert (await refund.run({**args, "amount": 1.0}, ctx(store, "acme", key="acme-refund")))["refunded"]
    async with store.sessions() as s:
        orders = {
            o.tenant_id: o.refunded_total for o in await s.scalars(select(Order).where(Order.id == "O-5002"))
        }
        effects = {e.idempotency_key: e.tenant_id for e in await s.scalars(select(Effect))}
    assert orders == {"acme": 1.0, "globex": 420.0}
    assert effects == {"globex-refund": "globex", "globex-refund-2": "globex", "acme-refund": "acme"}


async def test_a_recorded_effect_is_not_replayed_to_another_tenant(store: BusinessStore) -> None:
    refund = get_tool("issue_refund")
    assert refund is not None
    args = {"order_id": "O-5002", "amount": 10.0, "reason": "damaged on arrival"}
    assert (await refund.run(args, ctx(store, "acme", key="shared-key")))["refunded"] is True
    # The same key from another tenant does not read acme's recorded result back, nor write a second effect.
    with pytest.raises(Exception, match="UNIQUE|unique|duplicate"):
        await refund.run(args, ctx(store, "globex", key="shared-key"))
