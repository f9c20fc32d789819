"""Prometheus metrics of runs, approvals, gates, tools and models, computed from the database at scrape time.

Every number is an aggregate of stored records (runs, approval requests and decisions, ledger events), so each
thing is counted exactly once however often a workflow replays, an activity retries or a client repeats a
request, and every API replica reports the same values. Times come from stored timestamps (requested and
decided), never from workflow clocks. Labels are bounded: agent, tool, decision, outcome, state, verdict,
model, reason; never a run, request, tenant or person id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from approvals.models import ApprovalDecision, ApprovalRequest, AuditEvent
from countersign.models import Run

# One minute to three days: how long people take to decide.
DECISION_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 259200)
# Seconds a run takes, from a quick answer to a run that waited days for people.
RUN_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 14400, 86400, 259200)
COST_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
TERMINAL = ("completed", "failed", "cancelled")
ACTIVE = ("running", "awaiting_approval")


def _seconds(dialect: str, start: Any, end: Any) -> Any:
    """``end - start`` in seconds, in the database."""
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _epoch(dialect: str, t: Any) -> Any:
    """A timestamp as Unix seconds, in the database."""
    if dialect == "postgresql":
        return func.extract("epoch", t)
    return (func.julianday(t) - 2440587.5) * 86400.0


async def _histogram(
    s: AsyncSession,
    name: str,
    doc: str,
    labels: Sequence[str],
    keys: Sequence[Any],
    value: Any,
    buckets: Sequence[float],
    source: Any,
    where: Iterable[Any],
) -> HistogramMetricFamily:
    """A histogram whose buckets are counted in the database (one grouped query)."""
    columns = [
        *keys,
        *(func.sum(case((value <= b, 1), else_=0)) for b in buckets),
        func.count(),
        func.coalesce(func.sum(value), 0.0),
    ]
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    rows = (await s.execute(select(*columns).select_from(source).where(*where).group_by(*keys))).all()
    for row in rows:
        values = [str(v) for v in row[: len(keys)]]
        counts = [int(c or 0) for c in row[len(keys) : len(keys) + len(buckets)]]
        total, summed = int(row[-2]), float(row[-1] or 0.0)
        family.add_metric(
            values,
            buckets=[
                *((str(float(b)), float(c)) for b, c in zip(buckets, counts, strict=True)),
                ("+Inf", float(total)),
            ],
            sum_value=summed,
        )
    return family


async def _counts(s: AsyncSession, q: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in (await s.execute(q)).all()]


async def collect(s: AsyncSession, tenant: str | None = None) -> list[Metric]:
    """Every metric family, read from the database now (of one tenant's records, for its console)."""
    dialect = s.get_bind().dialect.name
    out: list[Metric] = []
    runs = [Run.tenant_id == tenant] if tenant else []
    reqs = [ApprovalRequest.tenant_id == tenant] if tenant else []

    # Runs.
    started = CounterMetricFamily("countersign_runs_started", "Runs started, by agent.", labels=["agent"])
    for agent, n in await _counts(s, select(Run.agent, func.count()).where(*runs).group_by(Run.agent)):
        started.add_metric([agent], n)
    finished = CounterMetricFamily(
        "countersign_runs_finished", "Runs that ended, by agent and outcome.", labels=["agent", "outcome"]
    )
    in_state = GaugeMetricFamily(
        "countersign_runs_in_state", "Runs now running or awaiting approval.", labels=["agent", "state"]
    )
    for agent, status, n in await _counts(
        s, select(Run.agent, Run.status, func.count()).where(*runs).group_by(Run.agent, Run.status)
    ):
        (finished if status in TERMINAL else in_state).add_metric([agent, status], n)
    out += [started, finished, in_state]
    wall = _seconds(dialect, Run.created_at, Run.updated_at)
    done = [Run.status.in_(TERMINAL), *runs]
    out.append(
        await _histogram(
            s,
            "countersign_run_wall_seconds",
            "Wall time of finished runs, human waits included.",
            ["agent"],
            [Run.agent],
            wall,
            RUN_BUCKETS,
            Run,
            done,
        )
    )
    waits = (
        select(
            ApprovalRequest.run_id.label("run_id"),
            func.sum(
                _seconds(
                    dialect,
                    ApprovalRequest.created_at,
                    func.coalesce(ApprovalRequest.decided_at, ApprovalRequest.created_at),
                )
            ).label("waited"),
        )
        .where(*reqs)
        .group_by(ApprovalRequest.run_id)
        .subquery()
    )
    active = wall - func.coalesce(waits.c.waited, 0.0)
    out.append(
        await _histogram(
            s,
            "countersign_run_active_seconds",
            "Agent time of finished runs: wall time minus waits for people.",
            ["agent"],
            [Run.agent],
            active,
            RUN_BUCKETS,
            Run.__table__.outerjoin(waits, waits.c.run_id == Run.id),
            done,
        )
    )
    out.append(
        await _histogram(
            s,
            "countersign_run_cost_usd",
            "Model cost per finished run (task), in US dollars.",
            ["agent"],
            [Run.agent],
            Run.cost_usd,
            COST_BUCKETS,
            Run,
            done,
        )
    )

    # Approval requests and decisions.
    requests = CounterMetricFamily(
        "countersign_approval_requests", "Approval requests opened.", labels=["agent", "tool"]
    )
    escalations = CounterMetricFamily(
        "countersign_approval_escalations", "Requests escalated to more roles.", labels=["agent", "tool"]
    )
    reminders = CounterMetricFamily(
        "countersign_approval_reminders", "Requests whose deciders were reminded.", labels=["agent", "tool"]
    )
    for agent, tool, n, escalated, reminded in await _counts(
        s,
        select(
            ApprovalRequest.agent,
            ApprovalRequest.tool,
            func.count(),
            func.sum(case((ApprovalRequest.escalated, 1), else_=0)),
            func.sum(case((ApprovalRequest.reminded, 1), else_=0)),
        )
        .where(*reqs)
        .group_by(ApprovalRequest.agent, ApprovalRequest.tool),
    ):
        requests.add_metric([agent, tool], n)
        escalations.add_metric([agent, tool], int(escalated or 0))
        reminders.add_metric([agent, tool], int(reminded or 0))
    out += [requests, escalations, reminders]

    decisions = CounterMetricFamily(
        "countersign_approval_decisions",
        "Decisions on approval requests (approve, edit, reject, respond) and requests closed without one "
        "(expire, cancel).",
        labels=["agent", "tool", "decision"],
    )
    joined = ApprovalDecision.__table__.join(
        ApprovalRequest, ApprovalRequest.id == ApprovalDecision.request_id
    )
    for agent, tool, action, n in await _counts(
        s,
        select(ApprovalRequest.agent, ApprovalRequest.tool, ApprovalDecision.action, func.count())
        .select_from(joined)
        .where(*reqs)
        .group_by(ApprovalRequest.agent, ApprovalRequest.tool, ApprovalDecision.action),
    ):
        decisions.add_metric([agent, tool, action], n)
    closed = {"expired": "expire", "cancelled": "cancel"}
    for agent, tool, status, n in await _counts(
        s,
        select(ApprovalRequest.agent, ApprovalRequest.tool, ApprovalRequest.status, func.count())
        .where(ApprovalRequest.status.in_(closed), *reqs)
        .group_by(ApprovalRequest.agent, ApprovalRequest.tool, ApprovalRequest.status),
    ):
        decisions.add_metric([agent, tool, closed[status]], n)
    out.append(decisions)

    # Time to decision: each decision from its request's opening; expiries from opening to expiry.
    decided = await _histogram(
        s,
        "countersign_approval_time_to_decision_seconds",
        "From a request's opening to each decision on it (expire: to its expiry), from stored times.",
        ["agent", "tool", "decision"],
        [ApprovalRequest.agent, ApprovalRequest.tool, ApprovalDecision.action],
        _seconds(dialect, ApprovalRequest.created_at, ApprovalDecision.created_at),
        DECISION_BUCKETS,
        joined,
        reqs,
    )
    expired = await _histogram(
        s,
        "countersign_approval_time_to_decision_seconds",
        "",
        ["agent", "tool", "decision"],
        [ApprovalRequest.agent, ApprovalRequest.tool, literal("expire")],
        _seconds(dialect, ApprovalRequest.created_at, ApprovalRequest.decided_at),
        DECISION_BUCKETS,
        ApprovalRequest,
        [ApprovalRequest.status == "expired", ApprovalRequest.decided_at.is_not(None), *reqs],
    )
    for sample in expired.samples:
        decided.samples.append(sample)
    out.append(decided)

    pending = GaugeMetricFamily(
        "countersign_approvals_pending",
        "Approval requests waiting for a decision now.",
        labels=["agent", "tool"],
    )
    # Every (agent, tool) that ever asked is reported, 0 when nothing waits (absent reads as unknown).
    for agent, tool, n in await _counts(
        s,
        select(
            ApprovalRequest.agent,
            ApprovalRequest.tool,
            func.sum(case((ApprovalRequest.status == "pending", 1), else_=0)),
        )
        .where(*reqs)
        .group_by(ApprovalRequest.agent, ApprovalRequest.tool),
    ):
        pending.add_metric([agent, tool], int(n or 0))
    oldest = GaugeMetricFamily(
        "countersign_approval_oldest_pending_timestamp_seconds",
        "When the oldest pending request of each agent was opened (Unix time).",
        labels=["agent"],
    )
    for agent, t in await _counts(
        s,
        select(ApprovalRequest.agent, func.min(_epoch(dialect, ApprovalRequest.created_at)))
        .where(ApprovalRequest.status == "pending", *reqs)
        .group_by(ApprovalRequest.agent),
    ):
        oldest.add_metric([agent], float(t))
    out += [pending, oldest]

    # From the ledger: gate verdicts, tool calls, escalations, model usage.
    out += await _ledger(s, [AuditEvent.tenant_id == tenant] if tenant else [])
    return out


def _agent() -> ColumnElement[str]:
    # Agents write their ledger events as actor "agent:<name>".
    return func.substr(AuditEvent.actor, 7)


async def _ledger(s: AsyncSession, scope: list[Any]) -> list[Metric]:
    agent = _agent()
    tool = AuditEvent.data["tool"].as_string()
    verdicts = CounterMetricFamily(
        "countersign_gate_verdicts",
        "The policy's verdicts on proposed tool calls.",
        labels=["agent", "tool", "verdict"],
    )
    verdict = AuditEvent.data["verdict"].as_string()
    for a, t, v, n in await _counts(
        s,
        select(agent, tool, verdict, func.count())
        .where(AuditEvent.type == "tool.proposed", *scope)
        .group_by(agent, tool, verdict),
    ):
        verdicts.add_metric([a, t or "", v or ""], n)
    calls = CounterMetricFamily(
        "countersign_tool_calls",
        "Tool calls that ran (outcome success or error) or were blocked.",
        labels=["agent", "tool", "outcome"],
    )
    outcome = case(
        (AuditEvent.type == "tool.blocked", "blocked"),
        else_=func.coalesce(AuditEvent.data["status"].as_string(), "success"),
    )
    for a, t, o, n in await _counts(
        s,
        select(agent, tool, outcome, func.count())
        .where(AuditEvent.type.in_(("tool.executed", "tool.blocked")), *scope)
        .group_by(agent, tool, outcome),
    ):
        calls.add_metric([a, t or "", o], n)
    escalated = CounterMetricFamily(
        "countersign_run_escalations",
        "Runs handed to a person, by why they stopped.",
        labels=["agent", "reason"],
    )
    budget = CounterMetricFamily(
        "countersign_budget_exhaustions", "Runs that spent their budget.", labels=["agent"]
    )
    reason = AuditEvent.data["reason"].as_string()
    for a, r, n in await _counts(
        s,
        select(agent, reason, func.count())
        .where(AuditEvent.type == "run.escalated", *scope)
        .group_by(agent, reason),
    ):
        escalated.add_metric([a, r or ""], n)
        if r == "budget_exceeded":
            budget.add_metric([a], n)
    model = AuditEvent.data["model"].as_string()
    calls_by_model = CounterMetricFamily(
        "countersign_model_calls", "Model calls that answered.", labels=["agent", "model"]
    )
    tokens = CounterMetricFamily(
        "countersign_model_tokens",
        "Tokens used (gen_ai.token.type: input or output).",
        labels=["agent", "model", "type"],
    )
    for a, m, n, tin, tout in await _counts(
        s,
        select(
            agent,
            model,
            func.count(),
            func.coalesce(func.sum(AuditEvent.data["input_tokens"].as_integer()), 0),
            func.coalesce(func.sum(AuditEvent.data["output_tokens"].as_integer()), 0),
        )
        .where(AuditEvent.type == "model.called", *scope)
        .group_by(agent, model),
    ):
        calls_by_model.add_metric([a, m or ""], n)
        tokens.add_metric([a, m or "", "input"], int(tin))
        tokens.add_metric([a, m or "", "output"], int(tout))
    return [verdicts, calls, escalated, budget, calls_by_model, tokens]
