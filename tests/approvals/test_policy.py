"""Tests for approvals/policy.py: rules as data, CEL conditions, validation, versions and reloads."""

from __future__ import annotations

import decimal
import functools
import hashlib
import json
import os
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from approvals.policy import (
    Policy,
    PolicyError,
    PolicyStore,
    Verdict,
    load_policy,
    parse_duration,
    parse_policy,
)

ROLES = {
    "trigger",
    "auditor",
    "admin",
    "approver:support",
    "approver:finance",
    "approver:claims",
    "approver:senior_adjuster",
    "approver:logistics",
}
DEMO = Path(__file__).resolve().parents[2] / "approvals" / "demo_policy.yaml"
CTX: dict[str, str] = {"agent": "support_drafting", "tenant": "acme", "caller": "user-1"}

DEFAULTS = """
defaults:
  roles: ["approver:support"]
  quorum: 1
  ttl: 24h
"""


def make(rules: str, defaults: str = DEFAULTS) -> Policy:
    """A policy from a `rules:` body (indented YAML list items) and a defaults block."""
    return parse_policy(
        textwrap.dedent(defaults) + "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  "), ROLES
    )


def decide(
    policy: Policy, tool: str, args: dict[str, Any] | None = None, /, *, kind: str = "write", **ctx: str
) -> Verdict:
    values = {**CTX, **ctx}
    return policy.evaluate(tool=tool, kind=kind, args=args or {}, **values)  # type: ignore[arg-type]


def write(path: Path, text: str) -> None:
    """Write and move the mtime forward, so a change is visible even on coarse-mtime filesystems."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    stamp = max(path.stat().st_mtime_ns, before + 1_000_000_000)
    os.utime(path, ns=(stamp, stamp))


# --- outcomes and matching ----------------------------------------------------------------------------


def test_every_outcome_carries_its_rule_fields() -> None:
    policy = make(
        """
        - id: ok
          tool: tool_allow
          outcome: allow
        - id: never
          tool: tool_deny
          outcome: deny
          reason: not on my watch
        - id: ask
          tool: tool_ask
          outcome: require_approval
          roles: ["approver:finance", "approver:support"]
          quorum: 2
          ttl: 2d
          remind_after: 90m
          escalate_after: 1d
          escalate_to: ["approver:senior_adjuster"]
        """
    )
    assert decide(policy, "tool_allow") == Verdict("allow", "ok", policy.version)
    assert decide(policy, "tool_deny") == Verdict("deny", "never", policy.version, reason="not on my watch")
    assert decide(policy, "tool_ask") == Verdict(
        "require_approval",
        "ask",
        policy.version,
        roles=("approver:finance", "approver:support"),
        quorum=2,
        ttl_seconds=2 * 86400,
        remind_after_seconds=90 * 60,
        escalate_after_seconds=86400,
        escalate_to=("approver:senior_adjuster",),
    )


def test_require_approval_defaults_quorum_one_and_ttl_24h() -> None:
    policy = make(
        """
        - id: ask
          tool: t
          outcome: require_approval
          roles: ["approver:support"]
        """
    )
    verdict = decide(policy, "t")
    assert (verdict.quorum, verdict.ttl_seconds, verdict.remind_after_seconds) == (1, 86400, None)
    assert (verdict.escalate_after_seconds, verdict.escalate_to) == (None, ())


def test_first_matching_rule_wins() -> None:
    policy = make(
        """
        - id: first
          tool: issue_refund
          when: args.amount > 10
          outcome: deny
        - id: second
          tool: issue_refund
          outcome: allow
        - id: third
          tool: issue_refund
          outcome: deny
        """
    )
    assert decide(policy, "issue_refund", {"amount": 11}).rule == "first"
    assert decide(policy, "issue_refund", {"amount": 5}).rule == "second"


def test_glob_matches_tool_names_case_sensitively() -> None:
    policy = make(
        """
        - id: deletes
          tool: "delete_*"
          outcome: deny
        - id: one-char
          tool: "get_?"
          outcome: allow
        """
    )
    assert decide(policy, "delete_order").rule == "deletes"
    assert decide(policy, "delete_").rule == "deletes"
    assert decide(policy, "get_x", kind="read").rule == "one-char"
    assert decide(policy, "get_xy", kind="read").rule == "default:read"
    assert decide(policy, "DELETE_order").rule == "default:write"
    assert decide(policy, "undelete_order").rule == "default:write"


def test_defaults_allow_reads_and_ask_default_roles_for_writes() -> None:
    policy = make(
        """
        - id: other
          tool: something_else
          outcome: deny
        """,
        defaults="""
        defaults:
          roles: ["approver:support", "approver:senior_adjuster"]
          quorum: 2
          ttl: 4h
        """,
    )
    assert decide(policy, "get_order", kind="read") == Verdict("allow", "default:read", policy.version)
    assert decide(policy, "cancel_order", kind="write") == Verdict(
        "require_approval",
        "default:write",
        policy.version,
        roles=("approver:support", "approver:senior_adjuster"),
        quorum=2,
        ttl_seconds=4 * 3600,
    )


def test_defaults_quorum_and_ttl_have_defaults() -> None:
    policy = make("[]", defaults='defaults:\n  roles: ["approver:support"]\n')
    verdict = decide(policy, "cancel_order")
    assert (verdict.outcome, verdict.quorum, verdict.ttl_seconds) == ("require_approval", 1, 86400)


def test_without_defaults_unmatched_writes_are_denied_and_reads_allowed() -> None:
    policy = parse_policy("rules: []\n", ROLES)
    write_verdict = decide(policy, "cancel_order")
    assert (write_verdict.outcome, write_verdict.rule) == ("deny", "default:write")
    assert write_verdict.reason
    assert decide(policy, "get_order", kind="read").outcome == "allow"


def test_an_unknown_kind_is_treated_as_a_write() -> None:
    policy = make("[]")
    assert decide(policy, "mystery", kind="execute").rule == "default:write"


# --- CEL conditions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "matching", "other"),
    [
        ("agent == 'claims'", {"agent": "claims"}, {"agent": "support_drafting"}),
        ("tenant in ['acme', 'globex']", {"tenant": "globex"}, {"tenant": "initech"}),
        ("caller.startsWith('svc-')", {"caller": "svc-batch"}, {"caller": "alice"}),
        ("tool.endsWith('_order')", {}, {}),
    ],
)
def test_conditions_see_agent_tenant_caller_and_tool(
    condition: str, matching: dict[str, str], other: dict[str, str]
) -> None:
    policy = make(
        f"""
        - id: hit
          tool: "*"
          when: "{condition}"
          outcome: deny
        """
    )
    assert decide(policy, "cancel_order", **matching).rule == "hit"
    if other:
        assert decide(policy, "cancel_order", **other).rule == "default:write"
    else:
        assert decide(policy, "cancel_refund").rule == "default:write"


def test_conditions_see_nested_args() -> None:
    policy = make(
        """
        - id: hit
          tool: t
          when: args.customer.tier == 'gold' && size(args.items) > 2 && args.items.exists(i, i.qty > 5)
          outcome: allow
        """
    )
    args = {"customer": {"tier": "gold"}, "items": [{"qty": 1}, {"qty": 2}, {"qty": 6}]}
    assert decide(policy, "t", args).rule == "hit"
    args["customer"] = {"tier": "silver"}
    assert decide(policy, "t", args).rule == "default:write"


@pytest.mark.parametrize("amount", [250, 250.0, decimal.Decimal("250.00")])
@pytest.mark.parametrize(
    "condition",
    [
        "args.amount > 100",
        "args.amount > 100.0",
        "args.amount >= 250",
        "args.amount == 250",
        "args.amount == 250.0",
        "args.amount != 251",
        "args.amount < 250.5",
        "double(args.amount) > 100.0",
    ],
)
def test_numbers_compare_by_value_for_int_float_and_decimal(condition: str, amount: Any) -> None:
    policy = make(
        f"""
        - id: hit
          tool: t
          when: "{condition}"
          outcome: allow
        """
    )
    assert decide(policy, "t", {"amount": amount}).rule == "hit"


@pytest.mark.parametrize("amount", [50, 50.0, 49.99])
def test_numbers_compare_by_value_below_threshold(amount: float) -> None:
    policy = make(
        """
        - id: big
          tool: t
          when: args.amount > 50
          outcome: deny
        """
    )
    assert decide(policy, "t", {"amount": amount}).rule == "default:write"


def test_booleans_are_not_numbers() -> None:
    policy = make(
        """
        - id: hit
          tool: t
          when: args.flag > 0
          outcome: allow
        """
    )
    verdict = decide(policy, "t", {"flag": True})
    assert (verdict.rule, verdict.outcome) == ("hit", "require_approval") and "overload" in (
        verdict.error or ""
    )


def test_a_missing_argument_fails_closed_never_reaching_a_later_rule() -> None:
    policy = make(
        """
        - id: needs-amount
          tool: issue_refund
          when: args.amount > 10
          outcome: allow
        - id: catch-all
          tool: issue_refund
          outcome: require_approval
          roles: ["approver:finance"]
        """
    )
    for args in ({"order_id": "o-1"}, {}):
        verdict = decide(policy, "issue_refund", args)
        assert (verdict.rule, verdict.outcome) == ("needs-amount", "require_approval")
        assert verdict.roles == ("approver:support",) and "amount" in (verdict.error or "")


def test_a_failing_deny_rule_above_an_allow_never_lets_the_call_through() -> None:
    policy = make(
        """
        - id: no-big
          tool: t
          when: args.amout > 100
          outcome: deny
          on_error: deny
        - id: rest
          tool: t
          outcome: allow
        """
    )
    verdict = decide(policy, "t", {"amount": 5000})
    assert (verdict.rule, verdict.outcome) == ("no-big", "deny")
    assert "amout" in (verdict.error or "") and "could not be evaluated" in (verdict.reason or "")
    no_defaults = parse_policy("rules:\n- {id: x, tool: t, when: args.nope, outcome: allow}\n", ROLES)
    assert decide(no_defaults, "t", {"a": 1}).outcome == "deny"


@pytest.mark.parametrize(
    "condition",
    [
        "args.amount",  # not a boolean
        "args.note > 3",  # string vs int
        "unknown_variable == 1",
        "args.amount / 0 > 1",
    ],
)
def test_conditions_that_fail_or_are_not_boolean_fail_closed(condition: str) -> None:
    policy = make(
        f"""
        - id: odd
          tool: t
          when: "{condition}"
          outcome: allow
        """
    )
    verdict = decide(policy, "t", {"amount": 5, "note": "hi"})
    assert (verdict.rule, verdict.outcome) == ("odd", "require_approval") and verdict.error


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"x": object()}, "not plain JSON"),
        ({"x": b"bytes"}, "not plain JSON"),
        ({"x": {1, 2}}, "not plain JSON"),
        ({"x": float("nan")}, "not plain JSON"),
        ({"x": float("inf")}, "not plain JSON"),
        ({"x": "y" * 70_000}, "larger than"),
        ({"x": functools.reduce(lambda acc, _: [acc], range(30), [])}, "deeper than"),
        ("not an object", "must be an object"),
        (["a", "list"], "must be an object"),
    ],
)
def test_arguments_that_cannot_be_judged_are_denied_before_any_rule(args: Any, problem: str) -> None:
    policy = make(
        """
        - id: everything
          tool: t
          outcome: allow
        """
    )
    verdict = decide(policy, "t", args)
    assert (verdict.rule, verdict.outcome) == ("guard:input", "deny") and problem in (verdict.reason or "")


@pytest.mark.parametrize("tool", [None, 42, "", ["t"]])
def test_a_tool_name_that_is_not_a_string_is_denied_not_a_crash(tool: Any) -> None:
    verdict = decide(make("- {id: all, tool: '*', outcome: allow}"), tool, {})
    assert (verdict.rule, verdict.outcome) == ("guard:input", "deny")


def test_a_read_glob_does_not_allow_a_write_tool_of_that_name() -> None:
    policy = make(
        """
        - id: reads
          tool: "get_*"
          outcome: allow
        - id: named
          tool: get_and_delete
          kind: write
          when: args.n < 3
          outcome: allow
        """
    )
    assert decide(policy, "get_order", {}, kind="read").rule == "reads"
    assert decide(policy, "get_and_wipe", {}, kind="write").rule == "default:write"
    assert decide(policy, "get_and_delete", {"n": 1}, kind="write").rule == "named"
    wide = make("- {id: w, tool: 'get_*', kind: write, outcome: allow}")
    assert decide(wide, "get_and_wipe", {}, kind="write").rule == "w"


def test_args_with_non_json_values_are_refused_but_uuids_and_decimals_pass() -> None:
    policy = make(
        """
        - id: conditional
          tool: t
          when: "true"
          outcome: allow
        - id: plain
          tool: t
          outcome: deny
        """
    )
    assert decide(policy, "t", {"x": object()}).rule == "guard:input"
    assert decide(policy, "t", {"x": 10**40}).rule == "guard:input"  # beyond CEL's int64
    assert decide(policy, "t", {"x": decimal.Decimal("12.50")}).rule == "conditional"
    assert decide(policy, "t", {"x": str(uuid.uuid4())}).rule == "conditional"


# --- validation at load -----------------------------------------------------------------------------------

APPROVAL = """
- id: {rule_id}
  tool: t
  outcome: require_approval
  roles: ["approver:support"]
"""


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: allow\n  colour: red\n",
            ["'r1'", "unknown field 'colour'"],
            id="unknown-field",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: allow\n  roles: [admin]\n",
            ["'r1'", "unknown field 'roles'"],
            id="roles-on-allow",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: [admin]\n  reason: x\n",
            ["'r1'", "unknown field 'reason'"],
            id="reason-on-approval",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  when: 'args.amount >'\n  outcome: allow\n",
            ["'r1'", "not valid CEL"],
            id="cel-syntax",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  when: '  '\n  outcome: allow\n", ["'r1'", "when"], id="blank-when"
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: ['approver:nobody']\n",
            ["'r1'", "unknown role", "approver:nobody"],
            id="unknown-role",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: ['approver:support']\n"
            "  escalate_after: 1h\n  escalate_to: [root]\n",
            ["'r1'", "escalate_to", "unknown role", "root"],
            id="unknown-escalation-role",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: ['approver:support']\n"
            "  escalate_after: 1h\n  escalate_to: [admin]\n",
            ["'r1'", "escalate_to", "cannot decide", "admin"],
            id="escalation-to-a-role-that-cannot-decide",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: [auditor]\n",
            ["'r1'", "roles", "cannot decide", "auditor"],
            id="approval-by-a-role-that-cannot-decide",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: []\n",
            ["'r1'", "roles"],
            id="empty-roles",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: [admin, admin]\n",
            ["'r1'", "listed twice"],
            id="repeated-role",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: allow\n- id: r1\n  tool: u\n  outcome: deny\n",
            ["'r1'", "rules[1]", "duplicate id"],
            id="duplicate-id",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: [admin]\n  quorum: 0\n",
            ["'r1'", "quorum"],
            id="quorum-0",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: [admin]\n  quorum: true\n",
            ["'r1'", "quorum"],
            id="quorum-bool",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: [admin]\n  escalate_after: 1h\n",
            ["'r1'", "escalate_after and escalate_to go together"],
            id="escalate-after-alone",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: [admin]\n  escalate_to: [admin]\n",
            ["'r1'", "escalate_after and escalate_to go together"],
            id="escalate-to-alone",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: [admin]\n  ttl: 3 weeks\n",
            ["'r1'", "ttl", "bad duration"],
            id="bad-duration",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: [admin]\n  remind_after: 0s\n",
            ["'r1'", "remind_after", "positive"],
            id="zero-duration",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: require_approval\n  roles: [admin]\n"
            "  ttl: 1h\n  remind_after: 2h\n",
            ["'r1'", "remind_after", "shorter than ttl"],
            id="timer-after-expiry",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: maybe\n", ["'r1'", "outcome must be one of"], id="bad-outcome"
        ),
        pytest.param("- tool: t\n  outcome: allow\n", ["rules[0] (no id)", "id"], id="missing-id"),
        pytest.param("- id: r1\n  outcome: allow\n", ["'r1'", "tool"], id="missing-tool"),
        pytest.param(
            "- id: 'default:write'\n  tool: t\n  outcome: allow\n",
            ["'default:write'", "reserved"],
            id="reserved-id",
        ),
        pytest.param(
            "- id: r1\n  tool: t\n  outcome: allow\n  when: 'true'\n  when: 'false'\n",
            ["duplicate key 'when'"],
            id="duplicate-yaml-key",
        ),
        pytest.param("- just a string\n", ["rules[0] (no id)", "mapping"], id="rule-not-mapping"),
    ],
)
def test_bad_rules_are_refused_naming_the_rule(rules: str, expected: list[str]) -> None:
    text = textwrap.dedent(DEFAULTS) + "rules:\n" + textwrap.indent(rules, "  ")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, ROLES)
    for fragment in expected:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "mapping with a `rules:` list", id="empty"),
        pytest.param("rules: {}\n", "mapping with a `rules:` list", id="rules-not-list"),
        pytest.param("defaults:\n  roles: [admin]\n", "mapping with a `rules:` list", id="no-rules"),
        pytest.param(
            "rules: []\nversion: 2\n", "unknown top-level field(s): version", id="unknown-top-level"
        ),
        pytest.param("rules: [\n", "not valid YAML", id="bad-yaml"),
        pytest.param(
            "defaults:\n  roles: [ghost]\nrules: []\n", "defaults: roles: unknown role", id="defaults-role"
        ),
        pytest.param("defaults:\n  quorum: 2\nrules: []\n", "defaults: roles", id="defaults-without-roles"),
        pytest.param(
            "defaults:\n  roles: [admin]\n  ttl: soon\nrules: []\n", "defaults: ttl", id="defaults-ttl"
        ),
    ],
)
def test_bad_documents_are_refused(text: str, expected: str) -> None:
    with pytest.raises(PolicyError, match=None) as info:
        parse_policy(text, ROLES)
    assert expected in str(info.value)


def test_known_roles_come_from_the_caller() -> None:
    text = "rules:\n" + APPROVAL.format(rule_id="r1").replace("approver:support", "approver:vip")
    with pytest.raises(PolicyError, match="approver:vip"):
        parse_policy(text, ROLES)
    assert parse_policy(text, ROLES | {"approver:vip"}).rules[0].id == "r1"


def test_yaml_anchors_and_merge_keys_may_share_settings() -> None:
    policy = parse_policy(
        textwrap.dedent(
            """
            rules:
              - &finance
                id: a
                tool: a
                outcome: require_approval
                roles: ["approver:finance"]
                ttl: 4h
              - <<: *finance
                id: b
                tool: b
                ttl: 8h
            """
        ),
        ROLES,
    )
    assert decide(policy, "b").ttl_seconds == 8 * 3600
    assert decide(policy, "b").roles == ("approver:finance",)


def test_load_policy_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n  - id: r1\n    tool: t\n    outcome: nope\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="policy.yaml") as info:
        load_policy(path, ROLES)
    assert "'r1'" in str(info.value)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml", ROLES)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90s", 90), ("15m", 900), ("4h", 14400), ("2d", 172800), (3600, 3600), (" 5m ", 300)],
)
def test_durations(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "4", "4w", "1.5h", "-1h", "h", 0, -5, True, 1.5, None, [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(value)


# --- versions and verdict serialisation -----------------------------------------------------------------


def test_version_is_the_sha256_of_the_content(tmp_path: Path) -> None:
    text = "rules: []\n"
    policy = parse_policy(text, ROLES)
    assert policy.version == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert parse_policy(text, ROLES).version == policy.version
    assert parse_policy(text + "# a comment\n", ROLES).version != policy.version
    path = tmp_path / "p.yaml"
    path.write_bytes(text.encode())
    assert load_policy(path, ROLES).version == policy.version


def test_verdicts_carry_the_policy_version() -> None:
    policy = make("- id: ok\n  tool: t\n  outcome: allow\n")
    assert decide(policy, "t").policy_version == policy.version
    assert decide(policy, "u").policy_version == policy.version
    assert decide(policy, "u", kind="read").policy_version == policy.version


def test_verdict_round_trips_through_a_plain_dict() -> None:
    verdict = Verdict(
        "require_approval",
        "r",
        "sha256:x",
        roles=("a", "b"),
        quorum=2,
        ttl_seconds=60,
        remind_after_seconds=10,
        escalate_after_seconds=20,
        escalate_to=("c",),
    )
    data = verdict.to_dict()
    assert data["roles"] == ["a", "b"]
    assert Verdict.from_dict(json.loads(json.dumps(data))) == verdict
    assert Verdict.from_dict({"outcome": "allow", "rule": "r", "policy_version": "v"}) == Verdict(
        "allow", "r", "v"
    )
    with pytest.raises(ValueError, match="unknown verdict field"):
        Verdict.from_dict({**data, "extra": 1})
    with pytest.raises(ValueError, match="outcome"):
        Verdict.from_dict({**data, "outcome": "maybe"})


# --- PolicyStore ----------------------------------------------------------------------------------------

GOOD_V1 = "rules:\n  - id: r1\n    tool: t\n    outcome: allow\n"
GOOD_V2 = "rules:\n  - id: r1\n    tool: t\n    outcome: deny\n    reason: changed our mind\n"
BAD = "rules:\n  - id: r1\n    tool: t\n    outcome: allow\n    roles: [admin]\n"


def test_store_refuses_a_bad_first_load(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(PolicyError, match="'r1'"):
        PolicyStore(path, ROLES)
    with pytest.raises(PolicyError):
        PolicyStore(tmp_path / "missing.yaml", ROLES)


def test_store_keeps_the_last_good_policy_and_picks_up_a_good_edit(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD_V1, encoding="utf-8")
    store = PolicyStore(path, ROLES)
    v1 = store.current
    assert decide(v1, "t").outcome == "allow"

    write(path, BAD)
    ok, message = store.reload()
    assert not ok
    assert "'r1'" in message
    assert v1.version in message
    assert store.current is v1

    write(path, GOOD_V2)
    store.maybe_reload()
    assert store.current.version != v1.version
    assert decide(store.current, "t") == Verdict(
        "deny", "r1", store.current.version, reason="changed our mind"
    )


def test_store_reload_reports_success(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD_V1, encoding="utf-8")
    store = PolicyStore(path, ROLES)
    assert store.reload() == (True, f"policy unchanged ({store.current.version})")
    old = store.current.version
    write(path, GOOD_V2)
    ok, message = store.reload()
    assert ok
    assert old in message
    assert store.current.version in message


def test_maybe_reload_only_reads_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD_V1, encoding="utf-8")
    store = PolicyStore(path, ROLES)
    first = store.current
    store.maybe_reload()
    assert store.current is first  # same file: no reload, not even an identical copy

    write(path, BAD)
    store.maybe_reload()
    assert store.current is first


def test_maybe_reload_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD_V1, encoding="utf-8")
    store = PolicyStore(path, ROLES)
    first = store.current

    path.unlink()
    store.maybe_reload()
    assert store.current is first

    def boom() -> tuple[bool, str]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "reload", boom)
    write(path, GOOD_V2)
    store.maybe_reload()
    assert store.current is first


# --- the demo policy ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Policy:
    return load_policy(DEMO, ROLES)


@pytest.mark.parametrize(
    ("amount", "rule", "outcome"),
    [
        (30, "refund-small-auto", "allow"),
        (30.0, "refund-small-auto", "allow"),
        (50, "refund-small-auto", "allow"),
        (250, "refund-needs-finance", "require_approval"),
        (250.0, "refund-needs-finance", "require_approval"),
        (2000, "refund-needs-finance", "require_approval"),
        (5000, "refund-large-two-approvers", "require_approval"),
        (5000.0, "refund-large-two-approvers", "require_approval"),
    ],
)
def test_demo_refunds(demo: Policy, amount: float, rule: str, outcome: str) -> None:
    verdict = decide(demo, "issue_refund", {"order_id": "A-1", "amount": amount})
    assert (verdict.rule, verdict.outcome) == (rule, outcome)


def test_demo_refund_approval_details(demo: Policy) -> None:
    mid = decide(demo, "issue_refund", {"order_id": "A-1", "amount": 250})
    assert mid.roles == ("approver:finance", "approver:support")
    assert (mid.quorum, mid.ttl_seconds, mid.remind_after_seconds) == (1, 86400, 7200)
    assert (mid.escalate_after_seconds, mid.escalate_to) == (8 * 3600, ("approver:senior_adjuster",))
    big = decide(demo, "issue_refund", {"order_id": "A-1", "amount": 5000})
    assert (big.roles, big.quorum, big.ttl_seconds) == (("approver:finance",), 2, 86400)
    assert (big.remind_after_seconds, big.escalate_after_seconds) == (4 * 3600, 12 * 3600)
    assert big.escalate_to == ("approver:support",)
    # A refund whose amount cannot be read still needs a person: the first condition fails closed.
    unread = decide(demo, "issue_refund", {"order_id": "A-1"})
    assert (unread.rule, unread.outcome, unread.roles) == (
        "refund-small-auto",
        "require_approval",
        ("approver:support",),
    )


@pytest.mark.parametrize(
    ("tool", "args", "rule", "outcome"),
    [
        ("get_order", {}, "reads-get", "allow"),
        ("search_tickets", {"q": "late"}, "reads-search", "allow"),
        ("delete_customer", {}, "no-deletes", "deny"),
        ("send_customer_reply", {"text": "hi"}, "reply-needs-support", "require_approval"),
        ("set_claim_reserve", {"amount": 5000}, "claim-reserve-auto", "allow"),
        ("set_claim_reserve", {"amount": 5000.0, "injuries": False}, "claim-reserve-auto", "allow"),
        (
            "set_claim_reserve",
            {"amount": 5000, "injuries": True},
            "claim-reserve-needs-senior",
            "require_approval",
        ),
        ("set_claim_reserve", {"amount": 25000.0}, "claim-reserve-needs-senior", "require_approval"),
        ("set_claim_reserve", {"injuries": False}, "claim-reserve-auto", "require_approval"),
        ("route_claim", {"queue": "fast"}, "claim-route", "allow"),
        ("flag_claim", {"reason": "fraud?"}, "claim-flag", "allow"),
        ("notify_customer", {}, "logistics-notify-customer", "require_approval"),
        ("issue_shipping_credit", {"amount": 10}, "logistics-shipping-credit", "require_approval"),
        ("rebook_shipment", {"extra_cost": 150}, "rebook-cheap-auto", "allow"),
        ("rebook_shipment", {"extra_cost": 200.0}, "rebook-cheap-auto", "allow"),
        ("rebook_shipment", {"extra_cost": 450.5}, "rebook-needs-logistics", "require_approval"),
        ("rebook_shipment", {}, "rebook-cheap-auto", "require_approval"),
        ("cancel_order", {}, "default:write", "require_approval"),
    ],
)
def test_demo_tools(demo: Policy, tool: str, args: dict[str, Any], rule: str, outcome: str) -> None:
    verdict = decide(demo, tool, args, kind="read" if tool.startswith(("get_", "search_")) else "write")
    assert (verdict.rule, verdict.outcome) == (rule, outcome)


def test_demo_roles_match_the_tools(demo: Policy) -> None:
    assert decide(demo, "set_claim_reserve", {"amount": 20000}).roles == ("approver:senior_adjuster",)
    assert decide(demo, "notify_customer").roles == ("approver:logistics", "approver:support")
    assert decide(demo, "issue_shipping_credit").roles == ("approver:logistics", "approver:finance")
    assert decide(demo, "rebook_shipment", {"extra_cost": 900}).roles == ("approver:logistics",)
    assert decide(demo, "cancel_order").roles == ("approver:support",)
    assert decide(demo, "delete_customer").reason == "destructive tools are never run by agents"


# --- checked against the registered tools at load -----------------------------------------------------------


@pytest.fixture(scope="module")
def tools() -> Any:
    from tools.registry import signatures

    return signatures()


@pytest.mark.parametrize(
    ("rule", "said"),
    [
        ("{id: typo, tool: issue_refund, when: 'args.amout > 10', outcome: deny}", "args.amout"),
        ("{id: typo, tool: issue_refund, when: 'has(args.amout)', outcome: deny}", "args.amout"),
        (
            "{id: types, tool: issue_refund, when: 'args.amount > \"10\"', outcome: deny}",
            "args.amount (number",
        ),
        (
            "{id: types, tool: issue_refund, when: 'args.order_id == 5', outcome: deny}",
            "args.order_id (string",
        ),
        ("{id: fn, tool: issue_refund, when: 'shout(args.reason)', outcome: deny}", "unknown function shout"),
        ("{id: nothing, tool: 'refund_*', outcome: allow}", "matches no registered tool"),
        ("{id: widen, tool: 'get_*', kind: write, outcome: allow}", "matches no registered tool"),
    ],
)
def test_mistakes_are_refused_at_load_naming_the_rule(tools: Any, rule: str, said: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy(f"rules:\n  - {rule}\n", ROLES, tools)
    rule_id = rule.split("id: ")[1].split(",")[0]
    assert said in str(e.value) and f"rule {rule_id!r} (rules[0])" in str(e.value)


def test_well_typed_conditions_and_defensive_denies_load(tools: Any) -> None:
    text = """rules:
  - {id: odd, tool: issue_refund, when: 'int(args.reason) > 3', outcome: deny}
  - {id: big, tool: issue_refund, when: 'args.amount > 100 && args.reason.startsWith("x")', outcome: deny}
  - {id: later, tool: 'delete_*', outcome: deny}
  - {id: reads, tool: 'get_*', outcome: allow}
"""
    policy = parse_policy(text, ROLES, tools)
    assert [r.id for r in policy.rules] == ["odd", "big", "later", "reads"]
    # The odd rule's condition fails at run time for this call: no later allow is reached (no defaults: deny).
    verdict = decide(policy, "issue_refund", {"order_id": "O-1", "amount": 5, "reason": "not a number"})
    assert (verdict.rule, verdict.outcome) == ("odd", "deny")


def test_the_demo_policy_fits_the_registered_tools(tools: Any) -> None:
    assert load_policy(DEMO, ROLES, tools).rules


# --- lists and the run ---------------------------------------------------------------------------------


def test_lists_are_declared_once_and_read_by_name() -> None:
    policy = parse_policy(
        """
lists:
  blocked_orders: ["O-9", "O-13"]
  goodwill: 50
rules:
  - {id: blocked, tool: issue_refund, when: 'args.order_id in lists.blocked_orders', outcome: deny}
  - {id: small, tool: issue_refund, when: 'args.amount <= lists.goodwill', outcome: allow}
""",
        ROLES,
    )
    assert decide(policy, "issue_refund", {"order_id": "O-9", "amount": 5}).rule == "blocked"
    assert decide(policy, "issue_refund", {"order_id": "O-1", "amount": 50}).rule == "small"
    assert decide(policy, "issue_refund", {"order_id": "O-1", "amount": 51}).rule == "default:write"
    with pytest.raises(PolicyError, match=r"rule 'x' \(rules\[0\]\): `when` reads lists.nope"):
        parse_policy("rules:\n  - {id: x, tool: t, when: 'args.a in lists.nope', outcome: deny}\n", ROLES)
    with pytest.raises(PolicyError, match="lists: values are not plain JSON"):
        parse_policy("lists: {bad: .nan}\nrules: []\n", ROLES)


def test_rules_count_the_runs_earlier_calls_and_read_its_input() -> None:
    policy = parse_policy(
        """
rules:
  - id: two-per-run
    tool: issue_refund
    when: run.calls.issue_refund.count >= 2 || run.calls.issue_refund.sum_amount + args.amount > 500
    outcome: deny
  - id: asked-order-only
    tool: issue_refund
    when: has(run.input.order_id) && run.input.order_id != args.order_id
    outcome: deny
  - {id: rest, tool: issue_refund, outcome: allow}
""",
        ROLES,
    )
    args = {"order_id": "O-1", "amount": 100}
    assert decide(policy, "issue_refund", args).rule == "rest"  # no earlier call: the counters start at 0
    earlier = {"calls": {"issue_refund": {"count": 1, "sum_amount": 450.0}}}
    assert (
        policy.evaluate(tool="issue_refund", kind="write", args=args, run=earlier, **CTX).rule
        == "two-per-run"
    )
    twice = {"calls": {"issue_refund": {"count": 2, "sum_amount": 20.0}}}
    assert (
        policy.evaluate(tool="issue_refund", kind="write", args=args, run=twice, **CTX).rule == "two-per-run"
    )
    asked = {"input": {"order_id": "O-2"}}
    assert (
        policy.evaluate(tool="issue_refund", kind="write", args=args, run=asked, **CTX).rule
        == "asked-order-only"
    )


def test_the_graph_counts_only_calls_that_ran() -> None:
    from langchain_core.messages import AIMessage, ToolMessage

    from agents.graph import earlier_calls

    history = [
        AIMessage(content="", tool_calls=[{"name": "issue_refund", "args": {"amount": 30}, "id": "a"}]),
        ToolMessage(content="{}", tool_call_id="a", status="success"),
        AIMessage(content="", tool_calls=[{"name": "issue_refund", "args": {"amount": 70}, "id": "b"}]),
        ToolMessage(content="Not run: rejected", tool_call_id="b", status="error"),
    ]
    assert earlier_calls(history) == {"issue_refund": {"count": 1, "sum_amount": 30.0}}


def test_the_policy_declares_its_approver_groups() -> None:
    base = {"trigger", "auditor", "admin"}
    text = """
approvers: [finance, claims]
rules:
  - {id: big, tool: issue_refund, outcome: require_approval, roles: ["approver:finance"]}
"""
    assert parse_policy(text, base).rules[0].roles == ("approver:finance",)  # type: ignore[union-attr]
    with pytest.raises(PolicyError, match="unknown role"):
        parse_policy(text.replace('"approver:finance"', '"approver:financ"'), base)
    with pytest.raises(PolicyError, match="approvers: a list of approver group names"):
        parse_policy("approvers: [fin ance]\nrules: []\n", base)


def test_declared_roles_are_known_to_keys_and_tokens(tmp_path: Path) -> None:
    from approvals.policy import declared_roles

    policy = tmp_path / "p.yaml"
    policy.write_text("approvers: [finance, night_shift]\nrules: []\n")
    assert declared_roles(policy) == {"approver:finance", "approver:night_shift"}
    assert declared_roles(tmp_path / "missing.yaml") == set()
    assert declared_roles(DEMO) >= {"approver:support", "approver:senior_adjuster"}


def test_string_helpers_operators_expect() -> None:
    policy = make(
        """
        - id: outside
          tool: t
          when: '!args.email.lowerAscii().trim().endsWith("@acme.example")'
          outcome: deny
        - id: many
          tool: t
          when: 'size(args.cc.split(",")) > 2'
          outcome: deny
        - {id: rest, tool: t, outcome: allow}
        """
    )
    assert decide(policy, "t", {"email": "  Bob@ACME.example ", "cc": "a"}).rule == "rest"
    assert decide(policy, "t", {"email": "bob@evil.example", "cc": "a"}).rule == "outside"
    assert decide(policy, "t", {"email": "bob@acme.example", "cc": "a,b,c"}).rule == "many"
    # Not a string: the condition errors, and the rule fails closed.
    assert decide(policy, "t", {"email": 5, "cc": "a"}).outcome == "require_approval"


def test_allow_with_notify_names_roles_to_tell() -> None:
    policy = make(
        """
        - {id: small, tool: t, outcome: allow, notify: ["approver:finance"]}
        """
    )
    verdict = decide(policy, "t", {})
    assert (verdict.outcome, verdict.notify) == ("allow", ("approver:finance",))
    assert Verdict.from_dict(verdict.to_dict()) == verdict
    with pytest.raises(PolicyError, match="notify: unknown role"):
        make("- {id: x, tool: t, outcome: allow, notify: ['approver:nobody']}")
