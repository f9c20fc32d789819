"""``/v1/approvals``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from api.deps import ApprovalReaderDep, ApproverDep, PolicyDep, SessionDep, SettingsDep, TemporalDep
from api.errors import problems
from api.schemas import ApprovalRead, DecisionCreate, DecisionResult, Page
from api.services import approvals as service
from api.services import pagination

router = APIRouter(prefix="/v1/approvals", tags=["approvals"], responses=problems(401, 403, 422))

Status = Literal["pending", "approved", "rejected", "expired", "responded", "cancelled"]


@router.get("", response_model=Page[ApprovalRead])
async def list_approvals(
    who: ApprovalReaderDep,
    s: SessionDep,
    status: Status | None = None,
    run_id: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)] = 50,
) -> Page[ApprovalRead]:
    """Approval requests of the tenant (the inbox), newest first."""
    return await service.list_requests(s, who, status=status, run_id=run_id, cursor=cursor, limit=limit)


@router.get("/{request_id}", response_model=ApprovalRead, responses=problems(404))
async def get_approval(request_id: str, who: ApprovalReaderDep, s: SessionDep) -> ApprovalRead:
    """One approval request with the decisions taken so far."""
    return await service.get_request(s, who, request_id)


@router.post(
    "/{request_id}/decisions",
    status_code=201,
    response_model=DecisionResult,
    responses=problems(404, 409, 413, 503),
)
async def decide_approval(
    request_id: str,
    body: DecisionCreate,
    who: ApproverDep,
    s: SessionDep,
    temporal: TemporalDep,
    policy: PolicyDep,
    settings: SettingsDep,
    response: Response,
    request: Request,
) -> DecisionResult:
    """Approve, edit the arguments, reject (reason required) or respond with a message for the agent.

    ``arguments_hash`` must be the hash of the arguments you were shown; a retried identical decision
    returns the first outcome (200).
    """
    result, created = await service.decide(
        s, request.app.state.read_sessions, temporal, policy, settings, who, request_id, body
    )
    if not created:
        response.status_code = 200
    return result
