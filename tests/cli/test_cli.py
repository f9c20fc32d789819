"""The CLI's policy check: verdicts with the rule that produced them, and errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def check(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["policy", "check", *args], env=env)
    return result.exit_code, result.output


def test_policy_check_prints_the_verdict_and_its_rule() -> None:
    code, out = check("--tool", "issue_refund", "--args", '{"amount": 250}', "--agent", "support_drafting")
    verdict = json.loads(out)
    assert code == 0
    assert verdict["outcome"] == "require_approval" and verdict["rule"] == "refund-needs-finance"
    assert verdict["policy_version"].startswith("sha256:") and verdict["quorum"] == 1
    code, out = check("--tool", "issue_refund", "--args", '{"amount": 20}')
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
