"""Replaying recorded tool calls under another policy: the evidence for reviewing a policy change.

Every call the policy judged is kept in ``policy_calls`` (``approvals.repositories.policy_calls``) with what
the policy saw (arguments, the run's input and earlier calls, provenance, the facts it read). :func:`compare`
judges each recorded call under the old and the new policy and sorts the calls whose outcome changes: newly
allowed, newly gated (sent to people) and newly denied. Facts the recorded verdict read are replayed as
recorded; a fact only the new policy reads is looked up now (today's records), which the report says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from approvals.models import PolicyCall
from approvals.policy import Policy, Verdict, evaluate_with_facts

Lookup = Callable[[str, str, list[Any]], Awaitable[Any]]  # (tenant, fact, args) -> value

CHANGES = {"allow": "newly allowed", "require_approval": "newly gated", "deny": "newly denied"}


@dataclass(frozen=True)
class Change:
    """One recorded call whose outcome differs between the two policies."""

    call: PolicyCall
    old: Verdict
    new: Verdict

    @property
    def kind(self) -> str:
        """``newly allowed``, ``newly gated`` or ``newly denied``."""
        return CHANGES[self.new.outcome]


@dataclass
class Comparison:
    """The result of replaying recorded calls under an old and a new policy."""

    calls: int = 0
    changes: list[Change] = field(default_factory=list)
    rule_changes: int = 0  # same outcome, decided by another rule
    looked_up: set[str] = field(default_factory=set)  # facts not recorded, read from today's records

    def by_kind(self) -> dict[str, list[Change]]:
        """The changes grouped as newly allowed / gated / denied (every group present)."""
        out: dict[str, list[Change]] = {name: [] for name in CHANGES.values()}
        for change in self.changes:
            out[change.kind].append(change)
        return out


async def _judge(policy: Policy, call: PolicyCall, lookup: Lookup, looked_up: set[str]) -> Verdict:
    context = call.context or {}
    recorded_facts = dict(context.get("facts") or {})

    async def fact(name: str, args: list[Any]) -> Any:
        looked_up.add(name)
        return await lookup(call.tenant_id, name, args)

    return await evaluate_with_facts(
        policy,
        fact,
        tool=call.tool,
        kind="read" if call.kind == "read" else "write",
        args=dict(call.arguments),
        agent=call.agent,
        tenant=call.tenant_id,
        caller=call.caller,
        run=context.get("run") or {},
        provenance=context.get("provenance") or {},
        facts=recorded_facts,
    )


async def compare(old: Policy, new: Policy, calls: Sequence[PolicyCall], lookup: Lookup) -> Comparison:
    """Judge every recorded call under ``old`` and ``new``; the calls whose outcome changes."""
    result = Comparison(calls=len(calls))
    for call in calls:
        before = await _judge(old, call, lookup, result.looked_up)
        after = await _judge(new, call, lookup, result.looked_up)
        if before.outcome != after.outcome:
            result.changes.append(Change(call, before, after))
        elif before.rule != after.rule:
            result.rule_changes += 1
    return result
