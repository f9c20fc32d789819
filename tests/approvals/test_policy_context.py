"""What a rule can know beyond the arguments (facts, provenance, RE2 matching), and the bounds on evaluating
it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from approvals.policy import (
    MAX_FACTS_PER_CALL,
    FactNeeded,
    FactSignature,
    Policy,
    PolicyError,
    ToolSignature,
    Verdict,
    evaluate_with_facts,
    evaluate_without_facts,
    parse_policy,
)

ROLES = {"approver:support", "approver:finance"}
TOOLS = {
    "issue_refund": ToolSignature(
        kind="write", args={"order_id": "string", "amount": "number", "reason": "string"}
    ),
    "send_payment": ToolSignature(kind="write", args={"recipient": "string", "amount": "number"}),
}
FACTS = {
    "order_customer": FactSignature(params=("string",), returns="string"),
    "ticket_customer": FactSignature(params=("string",), returns="string"),
    "known_payee": FactSignature(params=("string",), returns="boolean"),
}
POLICY = """
approvers: [support, finance]
defaults: {roles: ["approver:support"]}
rules:
  - id: untrusted-recipient
    tool: send_payment
    when: provenance.recipient in ["untrusted", "model"] && !fact.known_payee(args.recipient)
    outcome: deny
    reason: payee only named by untrusted text
  - id: other-customer
    tool: issue_refund
    when: >-
      has(run.input.ticket_id)
      && fact.order_customer(args.order_id) != fact.ticket_customer(run.input.ticket_id)
    outcome: deny
  - id: internal-reason
    tool: issue_refund
    when: args.reason.matches("^(?i)internal:")
    outcome: require_approval
    roles: ["approver:finance"]
  - id: rest
    tool: "*"
    kind: write
    outcome: allow
"""
CALL: dict[str, Any] = {"agent": "a", "tenant": "t", "caller": "c", "kind": "write"}


def policy(text: str = POLICY) -> Policy:
    return parse_policy(text, ROLES, TOOLS, FACTS)


def judge(
    p: Policy, tool: str, args: dict[str, Any], values: dict[str, Any], **kw: Any
) -> tuple[Verdict, list[str]]:
    """Evaluate with facts from ``values`` (by name); also returns the facts looked up, in order."""
    asked: list[str] = []

    async def lookup(name: str, fact_args: list[Any]) -> Any:
        asked.append(f"{name}{fact_args}")
        value = values[name]
        if isinstance(value, Exception):
            raise value
        return value

    verdict = asyncio.run(evaluate_with_facts(p, lookup, tool=tool, args=args, **CALL, **kw))
    return verdict, asked


REFUND = {"order_id": "O-1", "amount": 20, "reason": "broken"}


def test_facts_are_looked_up_on_demand_and_recorded_in_the_verdict() -> None:
    p = policy()
    verdict, asked = judge(
        p,
        "issue_refund",
        REFUND,
        {"order_customer": "C-2", "ticket_customer": "C-1"},
        run={"input": {"ticket_id": "T-1"}},
    )
    assert (verdict.outcome, verdict.rule) == ("deny", "other-customer")
    assert verdict.facts == {'order_customer("O-1")': "C-2", 'ticket_customer("T-1")': "C-1"}
    assert asked == ["order_customer['O-1']", "ticket_customer['T-1']"]
    same, _ = judge(
        p,
        "issue_refund",
        REFUND,
        {"order_customer": "C-1", "ticket_customer": "C-1"},
        run={"input": {"ticket_id": "T-1"}},
    )
    assert (same.outcome, same.rule) == ("allow", "rest")
    assert same.to_dict()["facts"] and Verdict.from_dict(same.to_dict()) == same


def test_a_fact_a_condition_does_not_need_is_not_looked_up() -> None:
    # `has(...)` is false: `false && fact...` is decided without the fact.
    verdict, asked = judge(policy(), "issue_refund", REFUND, {})
    assert (verdict.rule, asked) == ("rest", [])


def test_a_failed_fact_lookup_fails_closed_never_allows() -> None:
    verdict, _ = judge(
        policy(),
        "issue_refund",
        REFUND,
        {"order_customer": RuntimeError("db down"), "ticket_customer": "C-1"},
        run={"input": {"ticket_id": "T-1"}},
    )
    assert verdict.outcome == "require_approval" and verdict.rule == "other-customer"
    assert verdict.error and "db down" in verdict.error
    offline = evaluate_without_facts(
        policy(),
        "no records here",
        tool="issue_refund",
        args=REFUND,
        run={"input": {"ticket_id": "T-1"}},
        **CALL,
    )
    assert offline.outcome == "require_approval" and "no records here" in (offline.error or "")


def test_evaluate_asks_for_a_fact_it_was_not_given() -> None:
    with pytest.raises(FactNeeded) as need:
        policy().evaluate(tool="issue_refund", args=REFUND, run={"input": {"ticket_id": "T-1"}}, **CALL)
    assert (need.value.name, need.value.arguments) == ("order_customer", ["O-1"])


def test_fact_lookups_per_call_are_capped() -> None:
    text = (
        "rules:\n  - id: many\n    tool: issue_refund\n"
        "    when: '[{}].exists(i, fact.known_payee(string(i)))'\n"
        '    outcome: allow\n    kind: write\ndefaults: {{roles: ["approver:support"]}}\n'
    )
    p = parse_policy(text.format(", ".join(str(i) for i in range(40))), ROLES, TOOLS, FACTS)
    verdict, asked = judge(p, "issue_refund", REFUND, {"known_payee": False})
    assert len(asked) == MAX_FACTS_PER_CALL
    assert verdict.outcome == "require_approval" and "more than" in (verdict.error or "")


def test_provenance_gates_what_only_untrusted_text_named() -> None:
    p = policy()
    pay = {"recipient": "mallory@evil.example", "amount": 10}
    untrusted, _ = judge(
        p, "send_payment", pay, {"known_payee": False}, provenance={"recipient": "untrusted"}
    )
    assert (untrusted.outcome, untrusted.rule) == ("deny", "untrusted-recipient")
    known, _ = judge(p, "send_payment", pay, {"known_payee": True}, provenance={"recipient": "untrusted"})
    assert known.rule == "rest"
    from_records, asked = judge(p, "send_payment", pay, {}, provenance={"recipient": "tenant"})
    assert from_records.rule == "rest" and asked == []


def test_provenance_unknown_when_not_computed() -> None:
    text = POLICY.replace('in ["untrusted", "model"] && !fact.known_payee(args.recipient)', '== "unknown"')
    verdict, _ = judge(policy(text), "send_payment", {"recipient": "x", "amount": 1}, {})
    assert verdict.rule == "untrusted-recipient"


def test_re2_matches_and_string_helpers() -> None:
    p = policy()
    verdict, _ = judge(p, "issue_refund", REFUND | {"reason": "INTERNAL: test order"}, {})
    assert verdict.rule == "internal-reason"
    text = POLICY.replace(
        'args.reason.matches("^(?i)internal:")', 'args.reason.lowerAscii().startsWith("internal")'
    )
    assert (
        judge(policy(text), "issue_refund", REFUND | {"reason": "Internal test"}, {})[0].rule
        == "internal-reason"
    )
    # RE2 has no backreferences: a pattern only a backtracking engine accepts fails closed, it never matches.
    text = POLICY.replace('"^(?i)internal:"', '"(a+)\\\\1"')
    broken, _ = judge(policy(text), "issue_refund", REFUND | {"reason": "aa"}, {})
    assert broken.outcome == "require_approval" and broken.error


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        ("fact.nope(args.order_id)", "fact.nope, which no tool provides"),
        ('fact.order_customer(args.order_id, 1) == ""', "with 2 argument(s); it takes 1"),
        ('provenance.order_id == "untrustd"', "'untrustd', which is not one of"),
        ('provenance.ordr == "tenant"', "provenance.ordr, an argument issue_refund does not have"),
    ],
)
def test_facts_and_provenance_are_checked_at_load(when: str, problem: str) -> None:
    text = f"rules:\n  - id: r1\n    tool: issue_refund\n    when: '{when}'\n    outcome: deny\n"
    with pytest.raises(PolicyError, match="r1") as e:
        parse_policy(text, ROLES, TOOLS, FACTS)
    assert problem in str(e.value)


def test_a_runaway_condition_is_stopped_and_fails_closed() -> None:
    ten = "[" + ",".join("0" * 1 for _ in range(10)) + "]"
    nested = f"{ten}.all(a, {ten}.all(b, {ten}.all(c, {ten}.all(d, true))))"
    text = (
        f'defaults: {{roles: ["approver:support"]}}\nrules:\n  - id: slow\n    tool: issue_refund\n'
        f"    when: '{nested}'\n    outcome: allow\n    kind: write\n"
    )
    verdict = parse_policy(text, ROLES, TOOLS, FACTS).evaluate(tool="issue_refund", args=REFUND, **CALL)
    assert verdict.outcome == "require_approval" and "steps" in (verdict.error or "")
