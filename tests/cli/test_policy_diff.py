"""`countersign policy diff`: recorded tool calls judged again under a proposed policy, and what would
change."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from approvals.models import PolicyCall
from approvals.repositories import policy_calls
from cli.main import app
from countersign.db import utcnow
from tests.conftest import Stack

DEMO = Path(__file__).resolve().parents[2] / "approvals" / "demo_policy.yaml"


async def test_policy_diff_replays_recorded_calls_under_the_new_policy(stack: Stack, tmp_path: Path) -> None:
    # A call judged long ago, past the retention: the worker forgets it when it records new ones.
    old_id = "old-run:call_0"
    async with stack.sessions() as s, s.begin():
        await policy_calls.add(
            s,
            {
                "id": old_id, "tenant_id": "acme", "run_id": "old-run", "agent": "support_drafting",
                "caller": "key:x", "tool": "get_ticket", "kind": "read", "arguments": {"ticket_id": "T-1"},
                "context": {}, "outcome": "allow", "rule": "reads-get", "policy_version": "sha256:0",
                "created_at": utcnow() - dt.timedelta(days=stack.settings.policy_call_retention_days + 1),
            },
        )  # fmt: skip
    # T-1003's refund of 20 ran without asking (goodwill); T-1002's refund of 250 waits for a person.
    small = await stack.start("support_drafting", {"ticket_id": "T-1003"})
    assert (await stack.result(small["id"]))["status"] == "completed"
    large = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    await stack.pending(large["id"])
    async with stack.sessions() as s:
        kept = list(await s.scalars(select(PolicyCall).where(PolicyCall.run_id == small["id"])))
    refund = next(c for c in kept if c.tool == "issue_refund")
    async with stack.sessions() as s:
        assert await s.get(PolicyCall, old_id) is None
    assert (refund.outcome, refund.rule, refund.arguments["amount"]) == ("allow", "refund-small-auto", 20.0)
    assert refund.context["provenance"]["order_id"] == "tenant"
    assert refund.context["facts"] == {
        'order_customer("O-5003")': "C-102",
        'ticket_customer("T-1003")': "C-102",
    }

    # The proposal: goodwill only up to 10, and no policy searches at all.
    new = tmp_path / "new.yaml"
    text = DEMO.read_text().replace("goodwill_refund: 50 ", "goodwill_refund: 10 ")
    text = text.replace(
        "  - id: reads-search\n",
        '  - id: no-search\n    tool: search_policies\n    outcome: deny\n    reason: "trial"\n'
        "  - id: reads-search\n",
    )
    new.write_text(text)
    env = {
        "COUNTERSIGN_DATABASE_URL": stack.settings.resolved_database_url(),
        "COUNTERSIGN_BUSINESS_DATABASE_URL": stack.settings.resolved_business_database_url(),
        "COUNTERSIGN_DATA_DIR": str(stack.settings.data_dir),
    }
    args = ["policy", "diff", str(DEMO), str(new), "--since", "1d", "--tenant", "acme", "--json"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["calls"] >= 7
    gated = [(c["tool"], c["run_id"], c["old"]["rule"], c["new"]["rule"]) for c in report["newly gated"]]
    assert gated == [("issue_refund", small["id"], "refund-small-auto", "refund-needs-finance")]
    denied = {(c["tool"], c["run_id"]) for c in report["newly denied"]}
    assert denied == {("search_policies", small["id"]), ("search_policies", large["id"])}
    assert report["newly allowed"] == [] and report["facts_looked_up"] == []

    plain = await asyncio.to_thread(CliRunner().invoke, app, args[:-1], env=env)
    assert plain.exit_code == 0 and "newly gated: 1" in plain.output and "newly denied: 2" in plain.output
    same = await asyncio.to_thread(CliRunner().invoke, app, [*args[:3], str(DEMO), *args[4:-1]], env=env)
    assert (
        "newly allowed: 0" in same.output
        and "newly gated: 0" in same.output
        and "newly denied: 0" in same.output
    )
