"""What the console's pages show, computed from the same records the JSON API serves: inbox rows, the edit
form generated from a tool's argument schema, the diff of an edit, the run's timeline and trace waterfall."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from api.auth import Principal
from api.schemas import ApprovalRead
from approvals.models import ApprovalRequest, AuditEvent
from countersign.db import utcnow
from countersign.telemetry import SpanRecord


def when(t: dt.datetime | None) -> str:
    """A time as people read it in a console that spans time zones: minute precision, UTC."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if t else "-"


def span(seconds: float) -> str:
    """A duration in the two largest units that matter: ``2 d 3 h``, ``4 h 10 min``, ``35 s``."""
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def time_left(expires_at: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """How long a request still waits for a decision."""
    if expires_at is None:
        return "no deadline"
    left = (expires_at - (now or utcnow())).total_seconds()
    return "overdue" if left <= 0 else span(left)


def summary(arguments: dict[str, Any], limit: int = 120) -> str:
    """The arguments on one line: ``order_id=O-5002, amount=250.0``, cut at ``limit`` characters."""
    text = ", ".join(
        f"{k}={v if isinstance(v, str | int | float | bool) else json.dumps(v, sort_keys=True)}"
        for k, v in arguments.items()
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pretty(value: Any) -> str:
    """JSON for people: indented, keys sorted, non-ASCII kept."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def approvers(row: ApprovalRequest) -> list[str]:
    """Who has approved the request's current arguments, as the workflow recorded it (an edit approves new
    arguments, so approvals of the earlier ones no longer count)."""
    return list((row.outcome or {}).get("approvals") or [])


def status_line(a: ApprovalRead, approved_by: list[str]) -> str:
    """The request's state in words, quorum included: ``approved``, ``pending: 1 of 2 approvals``."""
    if a.status == "pending" and a.quorum > 1:
        return f"pending: {len(approved_by)} of {a.quorum} approvals"
    return a.status


def may_decide(who: Principal, a: ApprovalRead, requested_by: str, approved_by: list[str]) -> bool:
    """Whether ``who`` may decide ``a`` now: pending, one of its roles, not the run's own starter, and not
    someone who already approved these arguments (quorum needs different people)."""
    return (
        a.status == "pending"
        and bool(set(a.required_roles) & who.roles)
        and who.id != requested_by
        and who.id not in approved_by
    )


@dataclass
class FormField:
    """One argument of a tool as an HTML form control."""

    name: str
    label: str
    kind: str  # text, textarea, number, integer, select, json
    value: str
    required: bool
    help: str = ""
    options: list[str] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    error: str = ""


def _resolve(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional (``anyOf: [X, null]``)."""
    branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
    return {**prop, **branches[0]} if len(branches) == 1 else prop


def form_fields(model: type[BaseModel], values: dict[str, Any]) -> list[FormField]:
    """The edit form for a tool's arguments, from its JSON schema, filled with ``values``."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    out = []
    for name, raw in schema.get("properties", {}).items():
        prop = _resolve(raw)
        value = values.get(name, prop.get("default"))
        kind, options = "json", []
        if "enum" in prop:
            kind, options = "select", [str(o) for o in prop["enum"]]
        elif prop.get("type") == "boolean":
            kind, options = "select", ["true", "false"]
        elif prop.get("type") in ("number", "integer"):
            kind = prop["type"]
        elif prop.get("type") == "string":
            kind = "textarea" if (prop.get("maxLength") or 10_000) > 200 else "text"
        shown = (
            ""
            if value is None
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
            if kind != "json"
            else json.dumps(value)
        )
        out.append(
            FormField(
                name=name,
                label=str(prop.get("title") or name),
                kind=kind,
                value=shown,
                required=name in required,
                help=str(prop.get("description") or ""),
                options=options,
                minimum=prop.get("minimum", prop.get("exclusiveMinimum")),
                maximum=prop.get("maximum", prop.get("exclusiveMaximum")),
                max_length=prop.get("maxLength"),
            )
        )
    return out


def parse_form(
    model: type[BaseModel], fields: list[FormField], form: dict[str, str]
) -> tuple[dict[str, Any] | None, list[FormField]]:
    """The edited arguments from a submitted form, validated by the tool's own model; on any error, None and
    the fields with their messages (and what was typed, so nothing is lost)."""
    values: dict[str, Any] = {}
    for f in fields:
        text = form.get(f.name, "")
        f.value = text
        if text == "" and not f.required:
            continue
        try:
            if f.kind == "integer":
                values[f.name] = int(text)
            elif f.kind == "number":
                values[f.name] = float(text)
            elif f.kind == "json":
                values[f.name] = json.loads(text)
            elif f.options == ["true", "false"]:
                values[f.name] = text == "true"
            else:
                values[f.name] = text
        except ValueError:
            f.error = f"not a valid {f.kind}"
    if any(f.error for f in fields):
        return None, fields
    try:
        parsed = model.model_validate(values)
    except ValidationError as e:
        by_name = {f.name: f for f in fields}
        for err in e.errors(include_url=False):
            loc = str(err["loc"][0]) if err["loc"] else ""
            target = by_name.get(loc) or fields[0]
            target.error = err["msg"]
        return None, fields
    return parsed.model_dump(mode="json", exclude_unset=True), fields


@dataclass
class DiffRow:
    """One argument before and after an edit."""

    name: str
    before: str
    after: str

    @property
    def changed(self) -> bool:
        """Whether the edit changes this argument."""
        return self.before != self.after


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[DiffRow]:
    """Every argument of either side, proposed against edited."""

    def show(d: dict[str, Any], k: str) -> str:
        return "(absent)" if k not in d else json.dumps(d[k], sort_keys=True, ensure_ascii=False)

    return [DiffRow(k, show(before, k), show(after, k)) for k in dict.fromkeys([*before, *after])]


_EVENT_KEYS = ("tool", "verdict", "rule", "action", "status", "model", "reason", "resolution")


def event_summary(e: AuditEvent) -> str:
    """The few fields of a ledger event that say what happened."""
    data = e.data or {}
    parts = [f"{k}={data[k]}" for k in _EVENT_KEYS if data.get(k) not in (None, "", [])]
    if "input_tokens" in data:
        parts.append(f"tokens={data.get('input_tokens', 0)}+{data.get('output_tokens', 0)}")
    return ", ".join(str(p) for p in parts)


@dataclass
class Bar:
    """One span of the waterfall, placed in percent of the trace's duration."""

    name: str
    service: str
    depth: int
    offset: float
    width: float
    duration_ms: float
    status: str
    detail: str


def waterfall(spans: list[SpanRecord]) -> list[Bar]:
    """The trace's spans as bars on a shared time axis, parents before their children."""
    if not spans:
        return []
    start = min(s.start_time for s in spans)
    total = max((max(s.end_time for s in spans) - start).total_seconds(), 1e-6)
    by_parent: dict[str | None, list[SpanRecord]] = {}
    ids = {s.span_id for s in spans}
    for s in sorted(spans, key=lambda s: s.start_time):
        by_parent.setdefault(s.parent_span_id if s.parent_span_id in ids else None, []).append(s)
    out: list[Bar] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in by_parent.get(parent, []):
            seconds = (s.end_time - s.start_time).total_seconds()
            attrs = s.attributes or {}
            detail = ", ".join(
                f"{k}={attrs[k]}"
                for k in ("gen_ai.tool.name", "approval.verdict", "approval.action", "gen_ai.request.model")
                if k in attrs
            )
            out.append(
                Bar(
                    name=s.name,
                    service=s.service,
                    depth=min(depth, 8),
                    offset=round((s.start_time - start).total_seconds() / total * 100, 2),
                    width=round(max(seconds / total * 100, 0.3), 2),
                    duration_ms=round(seconds * 1000, 1),
                    status=s.status,
                    detail=detail,
                )
            )
            walk(s.span_id, depth + 1)

    walk(None, 0)
    return out


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram ``[(upper bound, count), ...]`` (``+Inf`` last), by
    linear interpolation within the bucket, as Prometheus' ``histogram_quantile`` does."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank, lower, below = q * buckets[-1][1], 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, count
    return lower


@dataclass
class AgentOps:
    """What an agent's owner reads on the operations page."""

    agent: str
    runs: dict[str, float] = field(default_factory=dict)
    pending: float = 0.0
    decision_buckets: dict[float, float] = field(default_factory=dict)
    decisions: dict[str, dict[str, float]] = field(default_factory=dict)  # tool -> decision -> count
    escalations: dict[str, float] = field(default_factory=dict)
    cost_sum: float = 0.0
    cost_count: float = 0.0

    @property
    def total_runs(self) -> float:
        """Every run of the agent, finished or not."""
        return sum(self.runs.values())

    def time_to_decision(self, q: float) -> str:
        """The ``q`` quantile of people's time to decide, in words."""
        value = quantile(q, sorted(self.decision_buckets.items()))
        return "-" if value is None else span(value)

    @property
    def cost_per_task(self) -> str:
        """Mean model cost of a finished run."""
        return f"${self.cost_sum / self.cost_count:.4f}" if self.cost_count else "-"

    def rates(self) -> list[tuple[str, float, float, float]]:
        """Per tool: (tool, decisions, edit rate, reject rate)."""
        out = []
        for tool, by in sorted(self.decisions.items()):
            total = sum(v for k, v in by.items() if k in ("approve", "edit", "reject", "respond"))
            if total:
                out.append((tool, total, by.get("edit", 0) / total, by.get("reject", 0) / total))
        return out

    def bars(self) -> list[tuple[str, float, float]]:
        """Runs by status as (status, count, width in percent of the largest)."""
        top = max(self.runs.values(), default=0) or 1
        return [(k, v, round(v / top * 100, 1)) for k, v in sorted(self.runs.items())]


def operations(families: list[Any]) -> list[AgentOps]:
    """The operations page's numbers per agent, from the same metric families GET /metrics serves."""
    agents: dict[str, AgentOps] = {}

    def of(labels: dict[str, str]) -> AgentOps:
        name = labels.get("agent", "?")
        return agents.setdefault(name, AgentOps(name))

    for family in families:
        for s in family.samples:
            a = of(s.labels)
            if s.name in ("countersign_runs_finished_total", "countersign_runs_in_state"):
                a.runs[s.labels.get("outcome") or s.labels.get("state", "?")] = s.value
            elif s.name == "countersign_approvals_pending":
                a.pending += s.value
            elif s.name == "countersign_approval_decisions_total":
                tool = a.decisions.setdefault(s.labels["tool"], {})
                tool[s.labels["decision"]] = tool.get(s.labels["decision"], 0) + s.value
            elif s.name == "countersign_approval_time_to_decision_seconds_bucket" and s.labels.get(
                "decision"
            ) not in ("expire", "cancel"):
                bound = float(s.labels["le"])
                a.decision_buckets[bound] = a.decision_buckets.get(bound, 0) + s.value
            elif s.name == "countersign_run_escalations_total":
                a.escalations[s.labels["reason"]] = s.value
            elif s.name == "countersign_run_cost_usd_sum":
                a.cost_sum = s.value
            elif s.name == "countersign_run_cost_usd_count":
                a.cost_count = s.value
    return [a for _, a in sorted(agents.items()) if a.total_runs or a.decisions]
