"""Approval policy: rules as data, conditions in CEL.

A policy is a YAML file with a ``rules:`` list and an optional ``defaults:`` mapping (see
``approvals/demo_policy.yaml``). Each rule names a tool (a name or an ``fnmatch`` glob), an optional
``when`` condition in CEL and an outcome: ``allow``, ``deny`` or ``require_approval``.

Evaluation:

- Rules are tried in file order; the first rule whose ``tool`` matches and whose ``when`` is true wins.
- ``when`` sees ``args`` (the tool arguments, as their JSON form), ``agent``, ``tenant``, ``caller``,
  ``tool``, ``lists`` (the file's named values), ``run`` (the run's input and its earlier calls),
  ``provenance`` (where each argument's value came from: see :data:`PROVENANCE`) and ``fact`` (named, typed
  look-ups into the tenant's data that the tools layer provides: ``fact.order_customer(args.order_id)``).
  Facts are resolved on demand by :func:`evaluate_with_facts`; the values a verdict relied on are recorded
  in it. Numbers compare by value whatever their JSON type, so ``args.amount > 100`` holds for both
  ``250`` and ``250.0`` (plain CEL refuses to compare an int with a double).
- Evaluation fails closed. A ``when`` that fails at run time (a missing key such as ``args.amout``, a type
  error) or yields anything but a boolean stops evaluation: the call requires approval from
  ``defaults`` (rule ``<id>``, or ``deny`` where the rule says ``on_error: deny``, and ``deny`` when the
  policy has no defaults), with the error recorded in the verdict. A later ``allow`` is never reached.
- Arguments are checked before any rule runs: only JSON (no NaN or infinities, bytes or sets), at most
  ``MAX_ARGS_BYTES`` as JSON and ``MAX_DEPTH`` levels deep; anything else is denied with the reason. A
  condition is at most ``MAX_CONDITION_CHARS`` long and runs at most ``MAX_CONDITION_STEPS`` evaluation steps
  (and ``MAX_CONDITION_SECONDS``); one that runs longer fails closed like any other error.
- A glob ``allow`` rule matches read tools only: a write tool named ``get_...`` is not allowed by
  ``tool: "get_*"`` unless the rule says ``kind: write`` (or ``any``). Rules naming one tool exactly, and
  deny and approval rules (which can only make a call safer), match tools of any kind unless ``kind`` says
  otherwise.
- When no rule matches, read tools are allowed (rule ``default:read``) and write tools require approval
  from ``defaults.roles`` (rule ``default:write``). A policy without ``defaults`` denies unmatched write
  tools instead, since there is nobody to ask.

Everything is validated at load: a bad file raises :class:`PolicyError` naming the rule and the problem,
and :class:`PolicyStore` keeps serving the last good policy while the file is bad.
"""

from __future__ import annotations

import dataclasses
import decimal
import fnmatch
import hashlib
import json
import logging
import operator
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

import celpy
import celpy.celtypes as celtypes
import celpy.evaluation
import yaml
from celpy.adapter import json_to_cel
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import to_jsonable_python

__all__ = [
    "ApprovalRule",
    "declared_roles",
    "evaluate_with_facts",
    "evaluate_without_facts",
    "FactCatalog",
    "FactNeeded",
    "FactSignature",
    "fact_key",
    "AllowRule",
    "DenyRule",
    "Policy",
    "PolicyDefaults",
    "PolicyError",
    "PolicyStore",
    "Rule",
    "run_policy_tests",
    "ToolCatalog",
    "ToolSignature",
    "Verdict",
    "load_policy",
    "parse_duration",
    "parse_policy",
]

logger = logging.getLogger(__name__)

Outcome = Literal["allow", "deny", "require_approval"]
ToolKind = Literal["read", "write"]

DEFAULT_TTL_SECONDS = 24 * 3600
DEFAULT_READ_RULE = "default:read"
DEFAULT_WRITE_RULE = "default:write"
GUARD_RULE = "guard:input"
MAX_ARGS_BYTES = 64 * 1024
MAX_DEPTH = 20
MAX_CONDITION_CHARS = 2000
# Each step is one node of the condition's syntax tree visited; comprehensions over a 64 KiB argument stay
# far below it, a nested comprehension over a large list does not. The time cap is the backstop.
MAX_CONDITION_STEPS = 10_000
MAX_CONDITION_SECONDS = 0.5
MAX_FACTS_PER_CALL = 16
# Where an argument's value came from, most trusted first (see agents/provenance.py for how it is computed):
# the run's input (the trigger), the tenant's own records, a person (an approver's edit), text a customer or
# a third party wrote (untrusted), the model alone, or not known (the caller did not compute it).
Provenance = Literal["input", "tenant", "person", "untrusted", "model", "unknown"]
PROVENANCE: tuple[str, ...] = get_args(Provenance)


class PolicyError(Exception):
    """A policy that cannot be loaded; the message names the rule and the problem."""


# --- Verdict -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The policy's answer for one proposed tool call, recorded once in workflow history."""

    outcome: Outcome
    rule: str
    policy_version: str
    reason: str | None = None
    roles: tuple[str, ...] = ()
    quorum: int = 1
    ttl_seconds: int | None = None
    remind_after_seconds: int | None = None
    escalate_after_seconds: int | None = None
    escalate_to: tuple[str, ...] = ()
    error: str | None = None  # a condition that could not be evaluated: the verdict is the fail-closed one
    notify: tuple[str, ...] = ()  # roles told that an allowed call ran
    # The facts the verdict relied on, ``name(args)`` -> value: what the gate saw of the tenant's data.
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict (tuples become lists)."""
        data = dataclasses.asdict(self)
        data["roles"] = list(self.roles)
        data["escalate_to"] = list(self.escalate_to)
        data["notify"] = list(self.notify)
        return data

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        """Rebuild a verdict from :meth:`to_dict` output; missing optional fields take their defaults.

        Unknown keys are refused rather than dropped: silently losing part of a recorded verdict could
        weaken a gate.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown verdict field(s): {', '.join(unknown)}")
        if d.get("outcome") not in get_args(Outcome):
            raise ValueError(f"bad verdict outcome: {d.get('outcome')!r}")
        values = dict(d)
        for key in ("roles", "escalate_to", "notify"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


# --- Rule models -----------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> int:
    """Seconds in a policy duration: ``"90s"``, ``"15m"``, ``"4h"``, ``"2d"`` or a whole number of seconds."""
    if isinstance(value, bool):  # bool is an int in Python, and YAML turns `yes` into True
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match is None:
            raise ValueError(f"bad duration {value!r}: use a whole number and a unit s, m, h or d, e.g. '4h'")
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"bad duration {value!r}: use a string such as '4h' or whole seconds")
    if seconds <= 0:
        raise ValueError(f"bad duration {value!r}: must be positive")
    return seconds


Duration = Annotated[int, BeforeValidator(parse_duration)]
Roles = Annotated[tuple[StrictStr, ...], Field(min_length=1)]


def _no_duplicates(roles: tuple[str, ...]) -> tuple[str, ...]:
    duplicates = sorted({role for role in roles if roles.count(role) > 1})
    if duplicates:
        raise ValueError(f"role(s) listed twice: {', '.join(duplicates)}")
    return roles


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RuleBase(_Model):
    id: StrictStr = Field(min_length=1)
    tool: StrictStr = Field(min_length=1)
    when: StrictStr | None = Field(default=None, max_length=MAX_CONDITION_CHARS)
    description: StrictStr | None = None
    # The kinds of tool the rule matches; unset: any, except that a glob `allow` matches read tools only.
    kind: Literal["read", "write", "any"] | None = None
    # What a `when` that cannot be evaluated means: ask the policy's default approvers, or refuse.
    on_error: Literal["require_approval", "deny"] = "require_approval"

    def matches_kind(self, kind: str) -> bool:
        """Whether the rule applies to a tool of this kind."""
        wanted = self.kind
        if wanted is None:
            glob = any(c in self.tool for c in "*?[")
            wanted = "read" if glob and isinstance(self, AllowRule) else "any"
        return wanted in ("any", kind)

    @field_validator("id")
    @classmethod
    def _id_not_reserved(cls, value: str) -> str:
        if value.startswith("default:"):
            raise ValueError("ids starting with 'default:' are reserved for the built-in defaults")
        return value

    @field_validator("when")
    @classmethod
    def _when_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("empty condition: leave `when` out to match every call")
        return value


class AllowRule(_RuleBase):
    """Run the tool call without asking anyone; ``notify`` names roles told that it ran (no one waits)."""

    outcome: Literal["allow"]
    notify: tuple[StrictStr, ...] = ()

    _notify_unique = field_validator("notify")(_no_duplicates)


class DenyRule(_RuleBase):
    """Never run the tool call; the model is told ``reason``."""

    outcome: Literal["deny"]
    reason: StrictStr | None = None


class ApprovalRule(_RuleBase):
    """Run the tool call only after ``quorum`` distinct people holding one of ``roles`` approve it."""

    outcome: Literal["require_approval"]
    roles: Roles
    quorum: StrictInt = Field(default=1, ge=1)
    ttl: Duration = DEFAULT_TTL_SECONDS
    remind_after: Duration | None = None
    escalate_after: Duration | None = None
    escalate_to: tuple[StrictStr, ...] = ()

    _roles_unique = field_validator("roles", "escalate_to")(_no_duplicates)

    @model_validator(mode="after")
    def _check_timers(self) -> Self:
        if (self.escalate_after is None) != (not self.escalate_to):
            raise ValueError("escalate_after and escalate_to go together: give both or neither")
        for name, seconds in (("remind_after", self.remind_after), ("escalate_after", self.escalate_after)):
            if seconds is not None and seconds >= self.ttl:
                # A timer at or after expiry never fires; almost certainly a typo in the policy.
                raise ValueError(f"{name} ({seconds}s) must be shorter than ttl ({self.ttl}s)")
        return self


Rule = AllowRule | DenyRule | ApprovalRule
_RULE_MODELS: dict[str, type[AllowRule] | type[DenyRule] | type[ApprovalRule]] = {
    "allow": AllowRule,
    "deny": DenyRule,
    "require_approval": ApprovalRule,
}


class PolicyDefaults(_Model):
    """Who approves write tools that no rule matches."""

    roles: Roles
    quorum: StrictInt = Field(default=1, ge=1)
    ttl: Duration = DEFAULT_TTL_SECONDS

    _roles_unique = field_validator("roles")(_no_duplicates)


# --- CEL ---------------------------------------------------------------------------------------------------


def _as_number(value: object) -> int | float | None:
    if isinstance(value, celtypes.BoolType):
        return None
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    return None


def _mixed_numeric(name: str, compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    # JSON does not keep 250 and 250.0 apart reliably (a pydantic float field dumps 250.0), and celpy
    # refuses int-vs-double comparisons, so `args.amount > 100` would fail for one of them. Comparing
    # numbers by value (as newer CEL specs do) makes conditions behave the same for both.
    base = celpy.evaluation.base_functions[name]

    def relation(left: Any, right: Any) -> Any:
        a, b = _as_number(left), _as_number(right)
        if a is not None and b is not None:
            return celtypes.BoolType(compare(a, b))
        if (a is not None and isinstance(right, celtypes.BoolType)) or (
            b is not None and isinstance(left, celtypes.BoolType)
        ):
            # celpy's BoolType subclasses int, so `args.amount > 100` would hold for amount=true.
            # CEL has no bool/number overload: refuse it, which makes the condition not match.
            raise TypeError(f"no such overload: {type(left).__name__} {name} {type(right).__name__}")
        return base(left, right)

    return relation


_CEL_FUNCTIONS: dict[str, Any] = {
    name: _mixed_numeric(name, compare)
    for name, compare in (
        ("_==_", operator.eq),
        ("_!=_", operator.ne),
        ("_<_", operator.lt),
        ("_<=_", operator.le),
        ("_>_", operator.gt),
        ("_>=_", operator.ge),
    )
}


def _string_fn(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        if not all(isinstance(a, celtypes.StringType) for a in args):
            raise TypeError(f"no such overload: {name} takes strings")
        return fn(*(str(a) for a in args))

    return call


# The string helpers of CEL's strings extension that operators reach for; celpy ships without that extension,
# so these few are defined here, with the extension's names and meaning (ASCII case only).
_CEL_FUNCTIONS |= {
    "lowerAscii": _string_fn("lowerAscii", lambda s: celtypes.StringType(s.lower() if s.isascii() else s)),
    "upperAscii": _string_fn("upperAscii", lambda s: celtypes.StringType(s.upper() if s.isascii() else s)),
    "trim": _string_fn("trim", lambda s: celtypes.StringType(s.strip())),
    "split": _string_fn(
        "split", lambda s, sep: celtypes.ListType([celtypes.StringType(x) for x in s.split(sep)])
    ),
}


class _Budget:
    """The steps and the time one condition may still use; shared by the evaluators of its comprehensions."""

    def __init__(self) -> None:
        self.steps = MAX_CONDITION_STEPS
        self.deadline = time.monotonic() + MAX_CONDITION_SECONDS


class _BudgetSpent(Exception):
    """A condition ran past its step or time cap."""


class _BoundedEvaluator(celpy.evaluation.Evaluator):
    """celpy's interpreter, counting the syntax-tree nodes it visits against the condition's budget."""

    budget: _Budget

    def _visit_tree(self, tree: Any) -> Any:
        # lark calls this for the root and for every child subtree: the one place that sees every node.
        budget = self.budget
        budget.steps -= 1
        if budget.steps < 0:
            raise _BudgetSpent(f"the condition ran more than {MAX_CONDITION_STEPS} steps")
        if budget.steps % 256 == 0 and time.monotonic() > budget.deadline:
            raise _BudgetSpent(f"the condition ran longer than {MAX_CONDITION_SECONDS} s")
        return super()._visit_tree(tree)

    def sub_evaluator(self, ast: Any) -> celpy.evaluation.Evaluator:
        sub = _BoundedEvaluator(ast, activation=self.activation)
        sub.budget = self.budget
        return sub


class _BoundedRunner(celpy.InterpretedRunner):
    def evaluate(self, context: Any) -> celtypes.Value:
        evaluator = _BoundedEvaluator(ast=self.ast, activation=self.new_activation())
        evaluator.budget = _Budget()
        return evaluator.evaluate(context)


def _cel_environment() -> celpy.Environment:
    # celpy.Environment() sets the interpreter's recursion limit to 2500, even downwards; keep the
    # process's limit if it was higher.
    limit = sys.getrecursionlimit()
    env = celpy.Environment(runner_class=_BoundedRunner)
    sys.setrecursionlimit(max(limit, sys.getrecursionlimit()))
    return env


def _json_default(value: Any) -> Any:
    # Money is often a Decimal; the JSON form must stay a number so comparisons work.
    if isinstance(value, decimal.Decimal):
        return float(value)
    return to_jsonable_python(value)


def _strict_json(value: Any) -> Any:
    # Money is often a Decimal; anything else that is not JSON (bytes, sets, objects) is refused, not
    # coerced: the policy must judge exactly what workflow history will record.
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return float(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _depth(value: Any, limit: int) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        if depth > limit:
            return depth
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return depth


def _args_problem(args: object) -> tuple[str | None, Any]:
    """(why the arguments cannot be judged, or None; their CEL value when they can)."""
    if not isinstance(args, Mapping):
        return f"arguments must be an object, not {type(args).__name__}", None
    try:
        text = json.dumps(args, default=_strict_json, allow_nan=False)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        return f"arguments are not plain JSON: {exc}", None
    if len(text.encode()) > MAX_ARGS_BYTES:
        return f"arguments are larger than {MAX_ARGS_BYTES} bytes as JSON", None
    plain = json.loads(text)
    if _depth(plain, MAX_DEPTH) > MAX_DEPTH:
        return f"arguments are nested deeper than {MAX_DEPTH} levels", None
    try:
        return None, json_to_cel(plain)
    except (ValueError, OverflowError) as exc:  # integers beyond 64 bits
        return f"arguments hold a value the policy cannot represent: {exc}", None


# --- Facts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactSignature:
    """What the policy may know of a fact: its parameters' and its value's JSON types, and what it means."""

    params: tuple[str, ...]
    returns: str
    description: str = ""


FactCatalog = Mapping[str, FactSignature]


class FactNeeded(Exception):
    """Raised by :meth:`Policy.evaluate` when a condition reads a fact it was not given."""

    def __init__(self, name: str, args: list[Any]) -> None:
        super().__init__(f"fact {fact_key(name, args)} is needed")
        self.name = name
        self.arguments = args


@dataclass(frozen=True)
class FactFailed:
    """A fact whose look-up failed: a condition that reads it fails closed with this error."""

    error: str


def fact_key(name: str, args: list[Any]) -> str:
    """How a fact and its arguments are named in verdicts and caches: ``order_customer("O-5002")``."""
    return f"{name}({', '.join(json.dumps(a, sort_keys=True, ensure_ascii=False) for a in args)})"


class _FactTable(celtypes.MapType):
    """The ``fact`` variable of one evaluation: the values already known, and the ones conditions read."""

    def __init__(self, known: Mapping[str, Any]) -> None:
        super().__init__()
        self.known = known
        self.used: dict[str, Any] = {}
        self.missing: list[tuple[str, list[Any]]] = []


def _fact_function(name: str) -> Callable[..., Any]:
    def call(table: Any, *args: Any) -> Any:
        if not isinstance(table, _FactTable):
            raise TypeError(f"no such overload: {name}() is a fact, called as fact.{name}(...)")
        plain = [_plain(a) for a in args]
        key = fact_key(name, plain)
        if key in table.known:
            value = table.known[key]
        elif name in table.known:  # a policy test case may give one value for every call of a fact
            value = table.known[name]
        else:
            # An error value, not an exception: `false && fact.x(...)` is decided without the fact, as CEL's
            # logical operators absorb errors. Only a condition whose value needs it asks for the look-up.
            table.missing.append((name, plain))
            if len(table.missing) > 1:
                # Once one look-up is due the evaluation is repeated anyway; stop here (celpy's error values
                # grow with every one an expression combines, so many of them are slow).
                raise FactNeeded(name, plain)
            return celpy.evaluation.CELEvalError(f"fact {key} is not known yet")
        if isinstance(value, FactFailed):
            raise _FactError(f"fact {key} could not be looked up: {value.error}")
        table.used[key] = value
        return json_to_cel(value)

    return call


class _FactError(Exception):
    """A fact a condition read could not be looked up."""


def _plain(value: Any) -> Any:
    """A CEL value as plain JSON (a fact's argument)."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.ListType):
        return [_plain(v) for v in value]
    if isinstance(value, celtypes.MapType):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, celtypes.NullType):
        return None
    raise TypeError(f"no such overload: a fact takes JSON values, not {type(value).__name__}")


_FACT_CALL = re.compile(r"(?<![\w.])fact\s*\.\s*([A-Za-z_]\w*)\s*\(")


async def evaluate_with_facts(
    policy: Policy, lookup: Callable[[str, list[Any]], Awaitable[Any]], **call: Any
) -> Verdict:
    """:meth:`Policy.evaluate`, looking up each fact a condition reads with ``lookup(name, args)`` (at most
    ``MAX_FACTS_PER_CALL``; a look-up that raises makes the condition fail closed)."""
    known: dict[str, Any] = dict(call.pop("facts", None) or {})
    while True:  # ends: each pass either decides or learns one more fact, and a failed fact decides
        try:
            return policy.evaluate(facts=known, **call)
        except FactNeeded as need:
            key = fact_key(need.name, need.arguments)
            if len(known) >= MAX_FACTS_PER_CALL:
                known[key] = FactFailed(f"more than {MAX_FACTS_PER_CALL} facts read for one call")
                continue
            try:
                known[key] = await lookup(need.name, need.arguments)
            except Exception as exc:  # any look-up failure fails the condition closed; it is recorded
                logger.warning("policy fact %s failed: %s", key, exc)
                known[key] = FactFailed(f"{type(exc).__name__}: {str(exc)[:200]}")


def evaluate_without_facts(policy: Policy, reason: str, **call: Any) -> Verdict:
    """:meth:`Policy.evaluate` where no fact can be looked up (``reason`` says why): a condition that reads
    one fails closed, as if its look-up had failed."""
    known: dict[str, Any] = dict(call.pop("facts", None) or {})
    while True:  # ends: each pass decides or marks one more fact failed, and reading a failed fact decides
        try:
            return policy.evaluate(facts=known, **call)
        except FactNeeded as need:
            known[fact_key(need.name, need.arguments)] = FactFailed(reason)


# --- Policy ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CompiledRule:
    rule: Rule
    program: celpy.Runner | None
    verdict: Verdict


def _rule_verdict(rule: Rule, version: str) -> Verdict:
    if isinstance(rule, AllowRule):
        return Verdict(outcome="allow", rule=rule.id, policy_version=version, notify=rule.notify)
    if isinstance(rule, DenyRule):
        return Verdict(outcome="deny", rule=rule.id, policy_version=version, reason=rule.reason)
    return Verdict(
        outcome="require_approval",
        rule=rule.id,
        policy_version=version,
        roles=rule.roles,
        quorum=rule.quorum,
        ttl_seconds=rule.ttl,
        remind_after_seconds=rule.remind_after,
        escalate_after_seconds=rule.escalate_after,
        escalate_to=rule.escalate_to,
    )


class Policy:
    """A validated policy; :meth:`evaluate` is pure and safe to call from many threads."""

    version: str
    rules: tuple[Rule, ...]
    defaults: PolicyDefaults | None

    def __init__(
        self,
        *,
        version: str,
        compiled: tuple[_CompiledRule, ...],
        defaults: PolicyDefaults | None,
        lists: Mapping[str, Any] | None = None,
    ):
        """Built by :func:`parse_policy` / :func:`load_policy`; not meant to be called directly."""
        self.version = version
        self.lists = dict(lists or {})
        self._lists = json_to_cel(self.lists)
        self.rules = tuple(item.rule for item in compiled)
        self.defaults = defaults
        self._compiled = compiled
        self._default_read = Verdict(outcome="allow", rule=DEFAULT_READ_RULE, policy_version=version)
        if defaults is None:
            self._default_write = Verdict(
                outcome="deny",
                rule=DEFAULT_WRITE_RULE,
                policy_version=version,
                reason="no policy rule matches this tool and the policy names no default approvers",
            )
        else:
            self._default_write = Verdict(
                outcome="require_approval",
                rule=DEFAULT_WRITE_RULE,
                policy_version=version,
                roles=defaults.roles,
                quorum=defaults.quorum,
                ttl_seconds=defaults.ttl,
            )

    def __repr__(self) -> str:
        return f"Policy(version={self.version!r}, rules={len(self.rules)})"

    def evaluate(
        self,
        *,
        tool: str,
        kind: ToolKind,
        args: dict[str, Any],
        agent: str,
        tenant: str,
        caller: str,
        run: Mapping[str, Any] | None = None,
        provenance: Mapping[str, str] | None = None,
        facts: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """The verdict of the first matching rule, or the default for the tool's kind; fails closed.

        ``run`` is what a rule may know of the run: ``input`` (what the trigger asked) and ``calls``: per
        tool, the ``count`` of its earlier calls in the run and the ``sum_amount`` of their ``amount``.
        ``provenance`` says, per argument, where its value came from (one of :data:`PROVENANCE`; an argument
        it does not name is ``unknown``). ``facts`` holds fact values by :func:`fact_key`; a condition that
        reads a fact not given raises :class:`FactNeeded` (:func:`evaluate_with_facts` looks it up and
        evaluates again). The facts the verdict relied on are recorded in it.
        """
        if not isinstance(tool, str) or not tool:
            return self._refuse(f"the tool name must be a non-empty string, not {tool!r:.80}")
        problem, cel_args = _args_problem(args)
        if problem is not None:
            return self._refuse(problem)
        # Anything not declared a read is treated as a write: the unsafe mistake is the other way round.
        kind = "read" if kind == "read" else "write"
        activation = {
            "args": cel_args,
            "agent": celtypes.StringType(str(agent)),
            "tenant": celtypes.StringType(str(tenant)),
            "caller": celtypes.StringType(str(caller)),
            "tool": celtypes.StringType(tool),
            "lists": self._lists,
            "run": _run_to_cel(run, agent, caller, tool),
            "provenance": _provenance_to_cel(args, provenance),
            "fact": (table := _FactTable(facts or {})),
        }
        verdict = self._default_read if kind == "read" else self._default_write
        for item in self._compiled:
            if not fnmatch.fnmatchcase(tool, item.rule.tool) or not item.rule.matches_kind(kind):
                continue
            if item.program is not None:
                try:
                    holds = _condition_holds(item, activation)
                except _ConditionError as exc:
                    verdict = self._failed_closed(item.rule, str(exc))
                    break
                if not holds:
                    continue
            verdict = item.verdict
            break
        return dataclasses.replace(verdict, facts=dict(table.used)) if table.used else verdict

    def _refuse(self, reason: str) -> Verdict:
        logger.warning("policy: call refused before any rule ran: %s", reason)
        return Verdict(
            outcome="deny", rule=GUARD_RULE, policy_version=self.version, reason=reason, error=reason
        )

    def _failed_closed(self, rule: Rule, error: str) -> Verdict:
        """The verdict when ``rule``'s condition cannot be evaluated: never an allow."""
        logger.warning("policy rule %s: condition could not be evaluated, failing closed: %s", rule.id, error)
        message = f"condition of rule {rule.id} could not be evaluated: {error}"
        if rule.on_error == "deny" or self.defaults is None:
            return Verdict(
                outcome="deny", rule=rule.id, policy_version=self.version, reason=message, error=error
            )
        return Verdict(
            outcome="require_approval",
            rule=rule.id,
            policy_version=self.version,
            reason=message,
            roles=self.defaults.roles,
            quorum=self.defaults.quorum,
            ttl_seconds=self.defaults.ttl,
            error=error,
        )


def _run_to_cel(run: Mapping[str, Any] | None, agent: str, caller: str, tool: str) -> Any:
    run = run or {}
    calls = {tool: {"count": 0, "sum_amount": 0.0}} | dict(run.get("calls") or {})
    value = {
        "agent": str(agent),
        "caller": str(caller),
        "input": dict(run.get("input") or {}),
        "calls": {
            str(name): {"count": int(c.get("count", 0)), "sum_amount": float(c.get("sum_amount", 0.0))}
            for name, c in calls.items()
        },
    }
    problem, cel = _args_problem(value)
    return cel if problem is None else json_to_cel({"agent": str(agent), "caller": str(caller)})


def _provenance_to_cel(args: Mapping[str, Any], provenance: Mapping[str, str] | None) -> Any:
    given = provenance or {}
    return json_to_cel(
        {str(name): given[name] if given.get(name) in PROVENANCE else "unknown" for name in args}
    )


class _ConditionError(Exception):
    """A ``when`` that failed at run time or yielded something other than a boolean."""


def _condition_holds(item: _CompiledRule, activation: dict[str, Any]) -> bool:
    assert item.program is not None
    table: _FactTable = activation["fact"]
    table.missing.clear()
    try:
        result = item.program.evaluate(activation)
    except Exception as exc:  # celpy raises CELEvalError, but a Python error can leak from its internals
        if table.missing:
            raise FactNeeded(*table.missing[0]) from exc
        raise _ConditionError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    if isinstance(result, Exception):  # celpy can return its error value instead of raising it
        if table.missing:
            raise FactNeeded(*table.missing[0])
        raise _ConditionError(f"{type(result).__name__}: {str(result)[:300]}")
    if not isinstance(result, celtypes.BoolType):
        raise _ConditionError(f"the condition yielded {type(result).__name__}, not a boolean")
    return bool(result)


# --- Loading -----------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc, unused-ignore]  # untyped without stubs
    """A SafeLoader that refuses duplicate keys, which YAML would otherwise resolve silently (last wins)."""


def _construct_mapping(loader: _StrictLoader, node: Any, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` merges are meant to be overridden
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # unhashable key: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown field {where!r}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def _label(raw: object, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        return f"rule {raw['id']!r} (rules[{index}])"
    return f"rules[{index}] (no id)"


DECIDER_PREFIX = "approver:"


def _check_roles(roles: tuple[str, ...], field: str, known_roles: set[str]) -> str | None:
    unknown = [role for role in roles if role not in known_roles]
    if unknown:
        return f"{field}: unknown role(s) {', '.join(unknown)}; known roles: {', '.join(sorted(known_roles))}"
    # Only approvers decide: a request (or its escalation) sent to another role could never be decided.
    cannot = [role for role in roles if not role.startswith(DECIDER_PREFIX)]
    if cannot:
        return f"{field}: role(s) {', '.join(cannot)} cannot decide approvals; name approver:<group> roles"
    return None


def _build(
    text: str,
    version: str,
    known_roles: set[str],
    source: str | None,
    tools: ToolCatalog | None = None,
    facts: FactCatalog | None = None,
) -> Policy:
    prefix = f"policy {source}: " if source else "policy: "

    def fail(message: str) -> PolicyError:
        return PolicyError(prefix + message)

    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise fail(f"not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise fail("a policy is a mapping with a `rules:` list (and optionally `defaults:`)")
    extra = sorted(str(key) for key in document if key not in ("rules", "defaults", "lists", "approvers"))
    if extra:
        raise fail(f"unknown top-level field(s): {', '.join(extra)}")
    approvers = document.get("approvers") or []
    if not isinstance(approvers, list) or not all(isinstance(g, str) and _NAME.match(g) for g in approvers):
        raise fail("approvers: a list of approver group names (letters, digits, _), e.g. [support, finance]")
    known_roles = set(known_roles) | {f"{DECIDER_PREFIX}{g}" for g in approvers}
    lists = document.get("lists") or {}
    if not isinstance(lists, dict) or not all(isinstance(k, str) and _NAME.match(k) for k in lists):
        raise fail("lists: a mapping of names (letters, digits, _) to a list or a single value")
    problem, _ = _args_problem(lists)
    if problem is not None:
        raise fail(f"lists: {problem.replace('arguments', 'values')}")

    defaults: PolicyDefaults | None = None
    if document.get("defaults") is not None:
        try:
            defaults = PolicyDefaults.model_validate(document["defaults"])
        except ValidationError as exc:
            raise fail(f"defaults: {_describe(exc)}") from exc
        problem = _check_roles(defaults.roles, "roles", known_roles)
        if problem:
            raise fail(f"defaults: {problem}")

    env = _cel_environment()
    compiled: list[_CompiledRule] = []
    seen_ids: dict[str, int] = {}
    for index, raw in enumerate(document["rules"]):
        label = _label(raw, index)
        if not isinstance(raw, dict):
            raise fail(f"{label}: a rule is a mapping with id, tool and outcome")
        outcome = raw.get("outcome")
        model = _RULE_MODELS.get(outcome) if isinstance(outcome, str) else None
        if model is None:
            outcomes = ", ".join(_RULE_MODELS)
            raise fail(f"{label}: outcome must be one of {outcomes}, not {outcome!r}")
        try:
            rule: Rule = model.model_validate(raw)
        except ValidationError as exc:
            raise fail(f"{label}: {_describe(exc)}") from exc
        if rule.id in seen_ids:
            raise fail(f"{label}: duplicate id, already used by rules[{seen_ids[rule.id]}]")
        seen_ids[rule.id] = index
        if isinstance(rule, ApprovalRule):
            for field, roles in (("roles", rule.roles), ("escalate_to", rule.escalate_to)):
                problem = _check_roles(roles, field, known_roles)
                if problem:
                    raise fail(f"{label}: {problem}")
        if isinstance(rule, AllowRule) and rule.notify:
            unknown = sorted(set(rule.notify) - known_roles)
            if unknown:
                raise fail(f"{label}: notify: unknown role(s) {', '.join(unknown)}")
        program: celpy.Runner | None = None
        if rule.when is not None:
            try:
                functions = _CEL_FUNCTIONS | {
                    name: _fact_function(name) for name in _FACT_CALL.findall(_STRING.sub('""', rule.when))
                }
                program = env.program(env.compile(rule.when), functions=functions)
            except Exception as exc:  # CELParseError mostly; lark can raise others on odd input
                raise fail(f"{label}: `when` is not valid CEL: {exc}") from exc
        if rule.when is not None:
            for name in _LIST.findall(_STRING.sub('""', rule.when)):
                if name not in lists:
                    raise fail(f"{label}: `when` reads lists.{name}, which the policy does not define")
        if tools is not None:
            problem = _check_tools(rule, tools)
            if problem:
                raise fail(f"{label}: {problem}")
        if facts is not None and rule.when is not None:
            problem = _fact_problem(rule.when, facts)
            if problem:
                raise fail(f"{label}: {problem}")
        compiled.append(_CompiledRule(rule=rule, program=program, verdict=_rule_verdict(rule, version)))
    return Policy(version=version, compiled=tuple(compiled), defaults=defaults, lists=lists)


def _version(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_policy(
    text: str, known_roles: set[str], tools: ToolCatalog | None = None, facts: FactCatalog | None = None
) -> Policy:
    """Validate and compile a policy from YAML text; its version is the SHA-256 of the UTF-8 text. With
    ``tools`` (the registered tools), every rule is also checked against the tools it matches; with
    ``facts`` (the registered facts), every fact a condition reads must exist and get its arguments.

    Raises :class:`PolicyError` naming the rule and the problem.
    """
    return _build(text, _version(text.encode("utf-8")), known_roles, source=None, tools=tools, facts=facts)


def load_policy(
    path: Path, known_roles: set[str], tools: ToolCatalog | None = None, facts: FactCatalog | None = None
) -> Policy:
    """Validate and compile the policy file at ``path``; its version is the SHA-256 of the file's bytes.

    Raises :class:`PolicyError` naming the file, the rule and the problem.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"policy {path}: cannot read: {exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy {path}: not UTF-8: {exc}") from exc
    return _build(text, _version(data), known_roles, source=str(path), tools=tools, facts=facts)


def declared_roles(path: Path) -> set[str]:
    """The approver roles a policy file declares (``approvers:``); none when the file cannot be read (loading
    it then reports why)."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return set()
    groups = document.get("approvers") if isinstance(document, dict) else None
    if not isinstance(groups, list):
        return set()
    return {f"{DECIDER_PREFIX}{g}" for g in groups if isinstance(g, str) and _NAME.match(g)}


# --- Checks against the registered tools --------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSignature:
    """What the policy may know of a registered tool: its kind and the JSON type of each argument."""

    kind: str
    args: Mapping[str, str]


ToolCatalog = Mapping[str, ToolSignature]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_ARG = re.compile(r"(?<![\w.])args\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*\"([^\"]+)\"\s*\])")
_NAME = re.compile(r"^[A-Za-z_]\w*$")
_LIST = re.compile(r"(?<![\w.])lists\.([A-Za-z_]\w*)")
_CALL = re.compile(r"(?<![\w])\.?\s*([A-Za-z_]\w*)\s*\(")
_COMPARE = re.compile(
    r"(?<![\w.])args\.([A-Za-z_]\w*)\s*(?:==|!=|<=|>=|<|>)\s*(\"[^\"]*\"|'[^']*'|-?\d+(?:\.\d+)?|true|false)"
    r"|(\"[^\"]*\"|'[^']*'|-?\d+(?:\.\d+)?|true|false)\s*(?:==|!=|<=|>=|<|>)\s*args\.([A-Za-z_]\w*)"
)
_PROVENANCE_READ = re.compile(r"(?<![\w.])provenance\s*\.\s*([A-Za-z_]\w*)")
_PROVENANCE_COMPARE = re.compile(
    r"(?<![\w.])provenance\.\w+\s*(?:==|!=)\s*(\"[^\"]*\"|'[^']*')"
    r"|(\"[^\"]*\"|'[^']*')\s*(?:==|!=)\s*provenance\.\w+"
)
CEL_FUNCTIONS = frozenset(
    {
        "has", "size", "int", "uint", "double", "string", "bytes", "bool", "type", "dyn", "duration",
        "timestamp", "matches", "contains", "startsWith", "endsWith", "all", "exists", "exists_one", "map",
        "filter", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getHours",
        "getMilliseconds", "getMinutes", "getMonth", "getSeconds",
        "lowerAscii", "upperAscii", "trim", "split",
    }
)  # fmt: skip


def _literal_type(text: str) -> str:
    if text[:1] in "\"'":
        return "string"
    if text in ("true", "false"):
        return "boolean"
    return "number"


def _compatible(declared: str, literal: str) -> bool:
    if declared in ("any", "null"):
        return True
    if declared in ("number", "integer"):
        return literal == "number"
    return declared == literal


def _condition_problem(rule: Rule, tools: list[tuple[str, ToolSignature]]) -> str | None:
    """Why ``rule``'s condition cannot be right for the tools it matches: an argument none of them has, a
    comparison of an argument with a literal of another type, or a function CEL does not have."""
    assert rule.when is not None
    code = _FACT_CALL.sub("(", _STRING.sub('""', rule.when))
    for match in _CALL.finditer(code):
        if match.group(1) not in CEL_FUNCTIONS:
            return f"`when` calls an unknown function {match.group(1)}()"
    for match in _ARG.finditer(rule.when):
        name = match.group(1) or match.group(2)
        if not any(name in sig.args for _, sig in tools):
            names = ", ".join(sorted({a for _, sig in tools for a in sig.args}))
            return f"`when` reads args.{name}, an argument {rule.tool} does not have (it has: {names})"
    for match in _PROVENANCE_READ.finditer(rule.when):
        if not any(match.group(1) in sig.args for _, sig in tools):
            return f"`when` reads provenance.{match.group(1)}, an argument {rule.tool} does not have"
    for match in _PROVENANCE_COMPARE.finditer(rule.when):
        value = (match.group(1) or match.group(2))[1:-1]
        if value not in PROVENANCE:
            return f"`when` compares a provenance with {value!r}, which is not one of {', '.join(PROVENANCE)}"
    for match in _COMPARE.finditer(rule.when):
        name, literal = (
            (match.group(1), match.group(2)) if match.group(1) else (match.group(4), match.group(3))
        )
        for tool, sig in tools:
            declared = sig.args.get(name)
            if declared is not None and not _compatible(declared, _literal_type(literal)):
                return f"`when` compares args.{name} ({declared} in {tool}) with {literal}"
    return None


def _call_arity(code: str, open_at: int) -> int:
    """How many arguments the call whose ``(`` is at ``open_at`` has (strings already blanked)."""
    depth, commas, empty = 0, 0, True
    for char in code[open_at + 1 :]:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            commas += 1
        if not char.isspace() and not (depth == 0 and char in ")]}"):
            empty = False
    return 0 if empty else commas + 1


def _fact_problem(when: str, facts: FactCatalog) -> str | None:
    """Why a condition's facts cannot be right: a fact nobody provides, or the wrong number of arguments."""
    code = _STRING.sub('""', when)
    for match in _FACT_CALL.finditer(code):
        name = match.group(1)
        sig = facts.get(name)
        if sig is None:
            known = ", ".join(sorted(facts)) or "none"
            return f"`when` reads fact.{name}, which no tool provides (facts: {known})"
        given = _call_arity(code, match.end() - 1)
        if given != len(sig.params):
            return f"`when` calls fact.{name} with {given} argument(s); it takes {len(sig.params)}"
    return None


def _check_tools(rule: Rule, tools: ToolCatalog) -> str | None:
    matched = [
        (name, sig)
        for name, sig in tools.items()
        if fnmatch.fnmatchcase(name, rule.tool)
        and rule.matches_kind("read" if sig.kind == "read" else "write")
    ]
    if not matched:
        # A deny rule for tools that may come later is harmless; anything else is almost surely a typo.
        if isinstance(rule, DenyRule):
            return None
        return f"tool {rule.tool!r} matches no registered tool"
    return _condition_problem(rule, matched) if rule.when is not None else None


# --- Policy tests ------------------------------------------------------------------------------------------


class PolicyCase(_Model):
    """One policy test case: a call, and the verdict it must get."""

    name: StrictStr = Field(min_length=1)
    tool: StrictStr = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    agent: StrictStr = "support_drafting"
    tenant: StrictStr = "demo"
    caller: StrictStr = "policy-test"
    kind: Literal["read", "write"] | None = None
    run: dict[str, Any] = Field(default_factory=dict)
    # Where each argument came from (see PROVENANCE); an argument not named is "unknown".
    provenance: dict[str, Provenance] = Field(default_factory=dict)
    # Fact values by name (every call of the fact) or by call, e.g. 'order_customer("O-5002")'.
    facts: dict[str, Any] = Field(default_factory=dict)
    expect: dict[str, Any]


@dataclass(frozen=True)
class CaseResult:
    """A case's outcome: ``problem`` is None when the verdict was the expected one."""

    name: str
    verdict: Verdict
    problem: str | None


def run_policy_tests(
    policy: Policy, text: str, tools: ToolCatalog | None = None
) -> tuple[list[CaseResult], list[str]]:
    """Run the test cases of ``text`` (YAML with a ``cases:`` list) against ``policy``: (each case's result,
    the ids of the rules no case reached). Raises :class:`PolicyError` when the file itself is not valid."""
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy tests: not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise PolicyError("policy tests: a mapping with a `cases:` list")
    results: list[CaseResult] = []
    reached: set[str] = set()
    for index, raw in enumerate(document["cases"]):
        try:
            case = PolicyCase.model_validate(raw)
        except ValidationError as exc:
            raise PolicyError(f"policy tests: cases[{index}]: {_describe(exc)}") from exc
        known = tools.get(case.tool) if tools else None
        kind: ToolKind = case.kind or ("read" if known is not None and known.kind == "read" else "write")
        try:
            verdict = policy.evaluate(
                tool=case.tool,
                kind=kind,
                args=case.args,
                agent=case.agent,
                tenant=case.tenant,
                caller=case.caller,
                run=case.run,
                provenance=case.provenance,
                facts=case.facts,
            )
        except FactNeeded as need:
            raise PolicyError(
                f"policy tests: case {case.name!r} reads fact {fact_key(need.name, need.arguments)}: "
                "give it in `facts:`"
            ) from need
        reached.add(verdict.rule)
        got = verdict.to_dict()
        wrong = [
            f"{key}: expected {want!r}, got {got.get(key)!r}"
            for key, want in case.expect.items()
            if (list(got.get(key) or []) if isinstance(want, list) else got.get(key)) != want
        ]
        results.append(CaseResult(case.name, verdict, "; ".join(wrong) or None))
    untested = [rule.id for rule in policy.rules if rule.id not in reached]
    return results, untested


# --- Store -------------------------------------------------------------------------------------------------

_Signature = tuple[int, int, int]


class PolicyStore:
    """Holds the last good policy; reload() keeps it when the file is bad."""

    def __init__(
        self,
        path: Path,
        known_roles: set[str],
        tools: ToolCatalog | None = None,
        facts: FactCatalog | None = None,
    ) -> None:
        """Load ``path`` at once (checked against ``tools`` when given); raise :class:`PolicyError` if this
        first load fails."""
        self._path = path
        self._known_roles = set(known_roles)
        self._tools = tools
        self._lock = threading.Lock()
        # Stat before reading: an edit landing between the two is then seen by the next maybe_reload().
        self._signature = self._stat()
        self._facts = facts
        self._policy = load_policy(path, self._known_roles, tools, facts)

    @property
    def path(self) -> Path:
        """The policy file this store watches."""
        return self._path

    @property
    def current(self) -> Policy:
        """The last policy that loaded successfully."""
        return self._policy

    def _stat(self) -> _Signature | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self) -> tuple[bool, str]:
        """Load the file again: ``(True, message)`` on success, ``(False, error)`` keeping the old policy."""
        with self._lock:
            signature = self._stat()
            old = self._policy
            try:
                policy = load_policy(self._path, self._known_roles, self._tools, self._facts)
            except PolicyError as exc:
                # Remember the bad file's signature so maybe_reload() does not retry (and log) every call.
                self._signature = signature
                logger.warning("policy reload failed, keeping %s: %s", old.version, exc)
                return False, f"kept policy {old.version}: {exc}"
            self._signature = signature
            self._policy = policy
        if policy.version == old.version:
            return True, f"policy unchanged ({policy.version})"
        logger.info("policy reloaded: %s -> %s", old.version, policy.version)
        return True, f"policy reloaded: {old.version} -> {policy.version}"

    def maybe_reload(self) -> None:
        """Reload if the file's mtime, size or inode changed since the last attempt; never raises."""
        try:
            if self._stat() != self._signature:
                self.reload()
        except Exception:  # a watcher must never take the caller down
            logger.exception("policy reload check failed; keeping %s", self._policy.version)
