"""``/v1/runs``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from api.deps import ReaderDep, SessionDep, SettingsDep, TemporalDep, TriggerDep
from api.errors import PROBLEM_RESPONSES
from api.schemas import Page, RunCreate, RunRead
from api.services import pagination
from api.services import runs as service

router = APIRouter(
    prefix="/v1/runs", tags=["runs"], responses={k: PROBLEM_RESPONSES[k] for k in (401, 403, 422)}
)


@router.post(
    "",
    status_code=201,
    response_model=RunRead,
    responses={k: PROBLEM_RESPONSES[k] for k in (404, 409, 413, 429)},
)
async def create_run(
    body: RunCreate,
    who: TriggerDep,
    s: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> RunRead:
    """Start an agent run. The same ``Idempotency-Key`` and body return the same run (200)."""
    run, created = await service.start_run(s, temporal, settings, who, body, idempotency_key)
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


@router.get("/{run_id}", response_model=RunRead, responses={404: PROBLEM_RESPONSES[404]})
async def get_run(run_id: str, who: ReaderDep, s: SessionDep) -> RunRead:
    """One run: status, input, output, error, usage and trace id."""
    return service.to_read(await service.get_run(s, who, run_id))
