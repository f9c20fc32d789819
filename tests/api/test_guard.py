"""The request guard: a NUL character never gets past the edge (422); oversize bodies are 413 however sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from countersign.models import Run
from tests.conftest import Stack


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "body",
    [
        {"agent": "support_drafting", "input": {"ticket_id": "T-1\u00002"}},
        {"agent": "support_drafting\u0000", "input": {"ticket_id": "T-1001"}},
    ],
)
async def test_nul_in_a_body_is_422_and_writes_nothing(
    stack: Stack, db_url: str, body: dict[str, Any]
) -> None:
    r = await stack.http.post("/v1/runs", json=body, headers=stack.auth("trigger"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "NUL" in r.json()["detail"]
    async with stack.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Run)) == 0


async def test_nul_in_a_decision_reason_never_reaches_the_workflow(stack: Stack) -> None:
    run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    [item] = await stack.pending(run["id"])
    r = await stack.http.post(
        f"/v1/approvals/{item['id']}/decisions",
        json={"action": "reject", "arguments_hash": item["arguments_hash"], "reason": "bad\u0000reason"},
        headers=stack.auth("alice"),
    )
    assert r.status_code == 422, r.text
    # The request is still pending and can be decided properly.
    ok = await stack.http.post(
        f"/v1/approvals/{item['id']}/decisions",
        json={"action": "reject", "arguments_hash": item["arguments_hash"], "reason": "not due"},
        headers=stack.auth("alice"),
    )
    assert ok.status_code == 201, ok.text
    assert (await stack.result(run["id"]))["status"] == "completed"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "path", ["/v1/runs/a%00b", "/v1/approvals?run_id=a%00b", "/v1/audit/events?actor=%00"]
)
async def test_nul_in_a_path_or_query_is_422(stack: Stack, db_url: str, path: str) -> None:
    r = await stack.http.get(path, headers=stack.auth("auditor"))
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_chunked_body_over_the_limit_is_413(stack: Stack, db_url: str) -> None:
    limit = stack.settings.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 1000 + 2):
            yield b" " * 1000  # no Content-Length: the server sees a chunked body

    r = await stack.http.post(
        "/v1/runs",
        content=chunks(),
        headers={**stack.auth("trigger"), "content-type": "application/json"},
    )
    assert r.status_code == 413, r.text
