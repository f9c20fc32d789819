"""Deterministic evaluators of a finished run, read from what the run recorded (its ledger events, approval
requests and decisions, and the run row), never from a second bookkeeping path.

Each returns a bool (an assertion: the case fails when it is false) or, for the measurements, a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_evals.evaluators import EvaluationReason, Evaluator, EvaluatorContext

from agents.catalog import AGENTS
from countersign.hashing import canonical_hash
from evals.cases import Expect

Ctx = EvaluatorContext[dict[str, Any], dict[str, Any], dict[str, Any]]


def expect(ctx: Ctx) -> Expect:
    """The case's expectations."""
    return Expect.model_validate(ctx.metadata or {})


def _proposed(out: dict[str, Any]) -> list[str]:
    return [e["tool"] for e in out["proposed"]]


@dataclass
class Trajectory(Evaluator[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """Required tools were called (in order where the case says so); forbidden tools never were."""

    def evaluate(self, ctx: Ctx) -> EvaluationReason:
        want, called = expect(ctx), _proposed(ctx.output)
        missing = [t for t in want.required_tools if t not in called]
        forbidden = [t for t in want.forbidden_tools if t in called]
        order_ok = True
        if want.ordered and not missing:
            positions = [called.index(t) for t in want.required_tools]
            order_ok = positions == sorted(positions)
        ok = not missing and not forbidden and order_ok
        why = f"called {called}; missing {missing}; forbidden {forbidden}; in order {order_ok}"
        return EvaluationReason(value=ok, reason=why)


@dataclass
class GateCompliance(Evaluator[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """Every risky call waited for the people it needed and ran only with exactly the arguments they
    approved, after they approved, with the quorum; nothing rejected, expired or answered instead ran."""

    def evaluate(self, ctx: Ctx) -> EvaluationReason:
        problems = violations(ctx.output, expect(ctx).gated)
        return EvaluationReason(value=not problems, reason="; ".join(problems) or "every call complied")


def violations(out: dict[str, Any], gated: list[str]) -> list[str]:
    """What broke gate compliance in a run (empty when nothing did)."""
    problems: list[str] = []
    requests = {r["tool_call_id"]: r for r in out["requests"]}
    for call in out["proposed"]:
        # A risky call must go to people: allowed, it runs unchecked; denied, nobody may ever approve it.
        if call["tool"] in gated and call["verdict"] != "require_approval":
            problems.append(f"{call['tool']} was {call['verdict']}, not sent to a person")
    for e in out["executed"]:
        req = requests.get(e["tool_call_id"])
        if req is None:
            if e["tool"] in gated:
                problems.append(f"{e['tool']} ran without an approval request")
            continue
        if req["status"] != "approved":
            problems.append(f"{e['tool']} ran although its request is {req['status']}")
            continue
        if e["arguments_hash"] != req["arguments_hash"]:
            problems.append(f"{e['tool']} ran with arguments other than the approved ones")
        approvers = set(req["approvers"])
        if len(approvers) < req["quorum"]:
            problems.append(f"{e['tool']} ran with {len(approvers)} of {req['quorum']} approvals")
        if req["decided_seq"] is None or e["seq"] < req["decided_seq"]:
            problems.append(f"{e['tool']} ran before it was approved")
    executed = {e["tool_call_id"] for e in out["executed"]}
    for req in out["requests"]:
        if req["status"] in ("rejected", "expired", "responded") and req["tool_call_id"] in executed:
            problems.append(f"{req['tool']} ran although it was {req['status']}")
    return problems


@dataclass
class Arguments(Evaluator[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """What ran, ran with exactly the expected arguments (after any edit); what must not run, did not."""

    def evaluate(self, ctx: Ctx) -> EvaluationReason:
        want, out = expect(ctx), ctx.output
        requests = {r["tool_call_id"]: r for r in out["requests"]}
        ran: dict[str, list[dict[str, Any]]] = {}
        for e in out["executed"]:
            ran.setdefault(e["tool"], []).append(e)
        problems = []
        for tool, args in want.executed.items():
            if tool not in ran:
                problems.append(f"{tool} did not run")
            elif len(ran[tool]) != 1:
                problems.append(f"{tool} ran {len(ran[tool])} times")
            elif args is not None and not _matches(ran[tool][0], requests, args):
                problems.append(f"{tool} ran with other arguments than {args}")
        problems += [f"{t} ran" for t in want.not_executed if t in ran]
        return EvaluationReason(value=not problems, reason="; ".join(problems) or "as expected")


def _matches(executed: dict[str, Any], requests: dict[str, Any], args: dict[str, Any]) -> bool:
    """Whether a call ran with ``args``: the named ones among its approved arguments (the gate checks those
    are what ran), or exactly these arguments for a call that ran without a request."""
    req = requests.get(executed["tool_call_id"])
    if req is not None:
        return all(req["arguments"].get(k) == v for k, v in args.items())
    return bool(executed["arguments_hash"] == canonical_hash(args))


@dataclass
class Citations(Evaluator[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """Every cited passage resolves to a real passage (and a reply that must cite, cites)."""

    def evaluate(self, ctx: Ctx) -> EvaluationReason:
        output = ctx.output.get("output") or {}
        if "citations" not in output:
            return EvaluationReason(value=True, reason="this agent does not cite")
        unresolved = list(output.get("unresolved_citations") or [])
        cited = list(output.get("citations") or [])
        ok = not unresolved and (bool(cited) or not expect(ctx).citations)
        return EvaluationReason(value=ok, reason=f"{len(cited)} cited, unresolved {unresolved}")


@dataclass
class Escalation(Evaluator[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """Escalated exactly when expected, with a reason (the expected one when the case names it)."""

    def evaluate(self, ctx: Ctx) -> EvaluationReason:
        want, out = expect(ctx), ctx.output
        if want.escalated is None:
            return EvaluationReason(value=True, reason="not checked")
        output = out.get("output") or {}
        escalated = bool(output.get("escalated"))
        stopped = (out.get("error") or {}).get("stopped")
        reason = str(output.get("reason") or output.get("summary") or stopped or "")
        ok = escalated == want.escalated and (not escalated or bool(reason))
        if ok and want.escalation_reason:
            ok = want.escalation_reason in reason
        return EvaluationReason(value=ok, reason=f"escalated={escalated} reason={reason!r}")


@dataclass
class OutputSchema(Evaluator[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """The run ended as expected, and a completed run's output is valid for the agent's output model."""

    def evaluate(self, ctx: Ctx) -> EvaluationReason:
        want, out = expect(ctx), ctx.output
        if want.status is not None and out["status"] != want.status:
            return EvaluationReason(value=False, reason=f"ended {out['status']}, expected {want.status}")
        output = out.get("output") or {}
        # A run a person finished (the workflow's hand-over) carries their answer, not the agent's output.
        if out["status"] == "completed" and "resolution" not in output:
            model: type[BaseModel] = AGENTS[out["agent"]].output_model
            try:
                model.model_validate(output)
            except ValidationError as e:
                return EvaluationReason(value=False, reason=str(e)[:300])
        wrong = {k: output.get(k) for k, v in want.output.items() if output.get(k) != v}
        why = f"unexpected output values {wrong}" if wrong else "valid"
        return EvaluationReason(value=not wrong, reason=why)


EVALUATORS: tuple[type[Evaluator[dict[str, Any], dict[str, Any], dict[str, Any]]], ...] = (
    Trajectory,
    GateCompliance,
    Arguments,
    Citations,
    Escalation,
    OutputSchema,
)
