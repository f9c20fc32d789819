"""The CLI: the policy check (verdicts with the rule that produced them, errors that name the field), and
deciding approvals from a terminal over the API."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from tests.conftest import Stack, serving

runner = CliRunner()


def check(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["policy", "check", *args], env=env)
    return result.exit_code, result.output


def test_policy_check_prints_the_verdict_and_its_rule() -> None:
    code, out = check(
        "--tool",
        "issue_refund",
        "--args",
        '{"order_id": "O-5002", "amount": 250}',
        "--agent",
        "support_drafting",
    )
    verdict = json.loads(out)
    assert code == 0
    assert verdict["outcome"] == "require_approval" and verdict["rule"] == "refund-needs-finance"
    assert verdict["policy_version"].startswith("sha256:") and verdict["quorum"] == 1
    code, out = check("--tool", "issue_refund", "--args", '{"order_id": "O-5003", "amount": 20}')
    assert json.loads(out)["rule"] == "refund-small-auto" and json.loads(out)["outcome"] == "allow"
    code, out = check("--tool", "get_order", "--args", "{}")
    assert json.loads(out)["outcome"] == "allow"


def test_policy_check_errors_name_the_field(tmp_path: Path) -> None:
    code, out = check("--tool", "issue_refund", "--args", "{amount: 1}")
    assert code == 2 and "--args: not valid JSON" in out
    code, out = check("--tool", "issue_refund", "--args", "[1]")
    assert code == 2 and "--args: must be a JSON object" in out
    bad = tmp_path / "policy.yaml"
    bad.write_text("rules:\n  - id: r1\n    tool: x\n    outcome: allow\n    when: 'args.amount >'\n")
    code, out = check("--tool", "x", "--policy", str(bad))
    assert code == 1 and "r1" in out


def test_policy_test_runs_the_demo_policys_cases_covering_every_rule() -> None:
    result = runner.invoke(app, ["policy", "test"])
    assert result.exit_code == 0, result.output
    assert "0 rule(s) untested" in result.output and "FAIL" not in result.output


def test_policy_test_fails_on_a_wrong_expectation_and_an_untested_rule(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "rules:\n"
        "  - {id: small, tool: issue_refund, when: 'args.amount <= 50', outcome: allow}\n"
        "  - {id: rest, tool: issue_refund, outcome: deny}\n"
        "  - {id: replies, tool: send_customer_reply, outcome: deny}\n"
    )
    (tmp_path / "p.tests.yaml").write_text(
        "cases:\n"
        "  - {name: small, tool: issue_refund, args: {order_id: O-1, amount: 5, reason: r}, "
        "expect: {outcome: allow, rule: small}}\n"
        "  - {name: big, tool: issue_refund, args: {order_id: O-1, amount: 500, reason: r}, "
        "expect: {outcome: allow, rule: small}}\n"
    )
    result = runner.invoke(app, ["policy", "test", "--policy", str(policy)])
    assert result.exit_code == 1
    assert "FAIL big: deny (rest) - outcome: expected 'allow', got 'deny'" in result.output
    assert "FAIL rule replies is reached by no case" in result.output


async def _countersign(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_approvals_are_listed_shown_and_decided_from_a_terminal(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    async with serving(stack) as url:
        env = {"COUNTERSIGN_API_URL": url, "COUNTERSIGN_API_KEY": stack.keys["alice"]}
        code, out = await _countersign("approvals", "list", env=env)
        assert code == 0 and item["id"] in out and "issue_refund" in out and "0/1" in out, out
        code, out = await _countersign("approvals", "show", item["id"], env=env)
        assert code == 0 and item["arguments_hash"] in out and '"order_id": "O-5002"' in out, out
        code, out = await _countersign("approvals", "decide", item["id"], env=env)
        assert code == 2 and "exactly one of --approve" in out
        code, out = await _countersign("approvals", "decide", item["id"], "--edit", "[1]", "--yes", env=env)
        assert code == 2 and "--edit: must be a JSON object" in out
        edited = '{"order_id": "O-5002", "amount": 120, "reason": "partial refund"}'
        code, out = await _countersign("approvals", "decide", item["id"], "--edit", edited, "--yes", env=env)
        assert code == 0 and item["arguments_hash"] in out and "the request is now approved" in out, out
        assert (await stack.result(run["id"]))["status"] == "completed"
        code, out = await _countersign("approvals", "decide", item["id"], "--approve", "--yes", env=env)
        assert code == 1 and "nothing to decide" in out
        code, out = await _countersign("approvals", "list", "--key", "cs_bogus", env=env)
        assert code == 1 and "unknown, revoked or expired" in out
