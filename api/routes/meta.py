"""``/v1/agents``, ``/v1/healthz``, ``/v1/readyz``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from agents import manifest
from api.deps import AnyRoleDep
from api.errors import problems
from api.schemas import AgentRead, Health, Readiness

router = APIRouter(prefix="/v1", tags=["meta"])


@router.get("/agents", response_model=list[AgentRead], responses=problems(401, 403))
async def list_agents(who: AnyRoleDep) -> list[AgentRead]:
    """Every agent: name, description, input schema, an example input, its tools and scopes."""
    return [
        AgentRead.model_validate(agent.describe())
        for agent in manifest.manifests()
        if who.agents is None or agent.name in who.agents
    ]


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "The database or Temporal is not reachable"}},
)
async def readyz(request: Request) -> JSONResponse:
    """The database and Temporal are reachable."""
    checks: dict[str, str] = {}
    try:
        async with request.app.state.read_sessions() as s:
            await s.execute(text("select 1"))
        checks["database"] = "ok"
    except Exception as e:  # any failure means not ready; the reason is reported, not raised
        checks["database"] = f"error: {type(e).__name__}"
    client = request.app.state.temporal
    try:
        if client is None:
            raise RuntimeError("not connected")
        await client.service_client.check_health()
        checks["temporal"] = "ok"
    except Exception as e:  # same: report, do not raise
        checks["temporal"] = f"error: {type(e).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
