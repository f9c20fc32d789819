"""``/v1/runs``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import RateLimitedTriggerDep, ReaderDep, SessionDep, SettingsDep, TemporalDep, TriggerDep
from api.errors import Invalid, problems
from api.schemas import Page, RunCreate, RunRead
from api.services import events, pagination
from api.services import runs as service

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=problems(401, 403, 422))


@router.post("", status_code=201, response_model=RunRead, responses=problems(404, 409, 413, 429, 503))
async def create_run(
    body: RunCreate,
    who: RateLimitedTriggerDep,
    s: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    response: Response,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> RunRead:
    """Start an agent run. The same ``Idempotency-Key`` and body return the same run (200)."""
    reads = request.app.state.read_sessions
    run, created = await service.start_run(s, reads, temporal, settings, who, body, idempotency_key)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return run


@router.get("", response_model=Page[RunRead])
async def list_runs(
    who: ReaderDep,
    s: SessionDep,
    status: str | None = None,
    agent: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)] = 50,
) -> Page[RunRead]:
    """The tenant's runs, newest first, filtered by status and agent."""
    return await service.list_runs(s, who, status=status, agent=agent, cursor=cursor, limit=limit)


@router.get("/{run_id}", response_model=RunRead, responses=problems(404))
async def get_run(run_id: str, who: ReaderDep, s: SessionDep) -> RunRead:
    """One run: status, input, output, error, usage and trace id."""
    return service.to_read(await service.get_run(s, who, run_id))


@router.post(
    "/{run_id}/cancel", status_code=202, response_model=RunRead, responses=problems(404, 409, 413, 503)
)
async def cancel_run(run_id: str, who: TriggerDep, s: SessionDep, temporal: TemporalDep) -> RunRead:
    """Ask the run to stop. Its pending approvals become ``cancelled`` and the run ends ``cancelled``; the
    response shows the run as it was when the request was accepted (poll it, or follow its events)."""
    return await service.cancel_run(s, temporal, who, run_id)


_EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "A `text/event-stream`: one event per ledger entry of the run (`id` is its `seq`, `event` its "
            "type, `data` a `RunEvent` as JSON); the stream ends when the run has finished."
        ),
        # OpenAPI 3.1 has an event stream's `schema` describe one event (3.2 names it `itemSchema`).
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "required": ["id", "event", "data"],
                    "properties": {
                        "id": {
                            "type": "string",
                            "description": "The event's `seq`: send it as Last-Event-ID",
                        },
                        "event": {"type": "string", "description": "The ledger event type"},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": "#/components/schemas/RunEvent"},
                        },
                    },
                }
            }
        },
    }
}


@router.get(
    "/{run_id}/events",
    response_class=EventSourceResponse,
    responses={**_EVENT_STREAM, **problems(404)},
)
async def stream_run_events(
    run_id: str,
    request: Request,
    who: ReaderDep,
    s: SessionDep,
    settings: SettingsDep,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Resume after this event id (the `seq` last received)"),
    ] = None,
) -> EventSourceResponse:
    """The run's events as Server-Sent Events: status changes, approvals requested and decided, tools
    executed, completion. Events already recorded come first, then new ones as they happen."""
    after = 0
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise Invalid(
                "Last-Event-ID: must be the id of an event this stream sent",
                errors=[{"field": "Last-Event-ID", "message": "not an event id"}],
            )
        after = int(last_event_id)
    # The request's session ends when this function returns, before the stream starts; the stream reads on
    # short sessions of its own.
    await service.get_run(s, who, run_id)
    sessions = request.app.state.read_sessions

    async def sse() -> AsyncIterator[ServerSentEvent]:
        async for e in events.stream(
            sessions,
            who,
            run_id,
            after=after,
            poll_seconds=settings.events_poll_seconds,
            max_seconds=settings.events_stream_max_seconds,
        ):
            yield ServerSentEvent(data=json.dumps(e.model_dump(mode="json")), id=str(e.seq), event=e.type)

    return EventSourceResponse(sse(), ping=15)
