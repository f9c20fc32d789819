"""``/v1/runs/{id}/trace`` (the span tree) and ``/v1/audit/events`` (the ledger), for auditors."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import AuditorDep, ReaderDep, SessionDep
from api.errors import PROBLEM_RESPONSES
from api.services import audit, pagination
from api.services.runs import get_run
from approvals.audit import to_json
from countersign.telemetry import SpanRecord

# What the time filters accept, exactly: a day, or a day and a time to the second, with an optional zone.
TIME = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?)?$"

router = APIRouter(prefix="/v1", tags=["audit"], responses={k: PROBLEM_RESPONSES[k] for k in (401, 403, 422)})


class SpanRead(BaseModel):
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str
    start_time: dt.datetime
    end_time: dt.datetime
    duration_ms: float
    status: str
    status_message: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    children: list[SpanRead]


class TraceRead(BaseModel):
    run_id: str
    trace_id: str | None
    span_count: int
    spans: list[SpanRead]


class AuditEventRead(BaseModel):
    seq: int
    id: str
    type: str
    actor: str
    tenant_id: str | None
    run_id: str | None
    trace_id: str | None
    occurred_at: dt.datetime
    data: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventRead]
    next_cursor: str | None


def _tree(rows: list[SpanRecord]) -> list[SpanRead]:
    nodes = {
        r.span_id: SpanRead(
            trace_id=r.trace_id,
            span_id=r.span_id,
            parent_span_id=r.parent_span_id,
            name=r.name,
            kind=r.kind,
            service=r.service,
            start_time=r.start_time,
            end_time=r.end_time,
            status=r.status,
            status_message=r.status_message,
            attributes=r.attributes,
            events=r.events,
            children=[],
            duration_ms=round((r.end_time - r.start_time).total_seconds() * 1000, 3),
        )
        for r in rows
    }
    roots: list[SpanRead] = []
    for node in nodes.values():
        parent = nodes.get(node.parent_span_id or "")
        (parent.children if parent is not None else roots).append(node)
    return roots


@router.get("/runs/{run_id}/trace", response_model=TraceRead, responses={404: PROBLEM_RESPONSES[404]})
async def run_trace(run_id: str, who: ReaderDep, s: SessionDep) -> TraceRead:
    """The run's trace as a span tree (from the embedded span store), oldest first at every level."""
    run = await get_run(s, who, run_id)
    rows = await audit.spans(s, run)
    return TraceRead(run_id=run.id, trace_id=run.trace_id, span_count=len(rows), spans=_tree(rows))


@router.get("/audit/events", response_model=AuditPage)
async def audit_events(
    who: AuditorDep,
    s: SessionDep,
    run_id: str | None = None,
    actor: str | None = None,
    type: Annotated[
        str | None, Query(description="Event type, or a prefix ending in '.': 'approval.'")
    ] = None,
    since: Annotated[
        str | None,
        Query(
            description="A day or an ISO 8601 date-time (UTC unless it names a zone), inclusive", pattern=TIME
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            description="A day or an ISO 8601 date-time (UTC unless it names a zone), exclusive", pattern=TIME
        ),
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)] = 100,
) -> AuditPage:
    """The tenant's ledger events in chain order, filtered by run, actor, type and time range."""
    rows, next_cursor = await audit.search(
        s, who, run_id=run_id, actor=actor, type=type, since=since, until=until, cursor=cursor, limit=limit
    )
    return AuditPage(
        items=[AuditEventRead.model_validate(to_json(r)) for r in rows],
        next_cursor=next_cursor,
    )
