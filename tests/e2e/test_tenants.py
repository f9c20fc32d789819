"""Two tenants created with the CLI cannot see each other's runs or approvals by any endpoint."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import select
from temporalio.client import WorkflowFailureError

from tests.conftest import Stack
from tools.business import Effect
from tools.demo_data import seed


def cli(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``countersign`` on the stack's database, as an operator would."""
    full = {**os.environ, "COUNTERSIGN_DATABASE_URL": stack.settings.resolved_database_url(), **env}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=full,
        capture_output=True,
        text=True,
        check=False,
    )


async def _key(stack: Stack, tenant: str, *roles: str) -> tuple[dict[str, str], str]:
    """(Authorization header, public prefix) of a key made with ``countersign keys create``."""
    args = ["keys", "create", "--tenant", tenant, "--name", f"{tenant} {' '.join(roles)}"]
    for role in roles:
        args += ["--role", role]
    made = await asyncio.to_thread(cli, stack, *args)
    assert made.returncode == 0, made.stderr
    prefix = next(line.split()[1] for line in made.stdout.splitlines() if line.startswith("prefix:"))
    return {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}, prefix


async def test_tenants_made_with_the_cli_are_walled_off(stack: Stack) -> None:
    north_trigger, p1 = await _key(stack, "north", "trigger", "auditor")
    north_approver, p2 = await _key(stack, "north", "approver:finance")
    south, p3 = await _key(stack, "south", "trigger", "auditor", "approver:finance", "approver:support")
    await seed(stack.store, "north")  # north has the demo records; south has none of its own
    listed = await asyncio.to_thread(cli, stack, "keys", "list", "--tenant", "north")
    assert listed.returncode == 0 and p1 in listed.stdout and p2 in listed.stdout and p3 not in listed.stdout

    r = await stack.http.post(
        "/v1/runs",
        json={"agent": "support_drafting", "input": {"ticket_id": "T-1002"}},
        headers=north_trigger,
    )
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    item: dict[str, Any] = {}
    async with asyncio.timeout(60):
        while not item:
            page = await stack.http.get(
                f"/v1/approvals?status=pending&run_id={run_id}", headers=north_approver
            )
            item = next(iter(page.json()["items"]), {})
            await asyncio.sleep(0 if item else 0.05)  # polls a condition, as Stack.pending does
    north_ids = {"run_id": run_id, "request_id": item["id"]}

    # Every route of the JSON API that takes a run or an approval id answers 404 to the other tenant (the
    # console's pages have their own cross-tenant checks in tests/api/test_console.py).
    assert stack.app is not None
    checked = 0
    for ctx in iter_route_contexts(stack.app.routes):
        route = ctx.original_route
        path = str(ctx.path)
        if not isinstance(route, APIRoute) or not ({"{run_id}", "{request_id}"} & set(path.split("/"))):
            continue
        if path.startswith("/ui"):
            continue
        for method in route.methods or ():
            url = path.format(**north_ids)
            body = (
                {"action": "approve", "arguments_hash": item["arguments_hash"]}
                if "decisions" in path
                else None
            )
            answer = await stack.http.request(method, url, json=body, headers=south)
            assert answer.status_code == 404, (method, url, answer.text)
            checked += 1
    assert checked >= 5

    # Lists of the other tenant are empty of this tenant's records.
    for url in (
        "/v1/runs",
        "/v1/approvals",
        "/v1/approvals?status=pending",
        f"/v1/approvals?run_id={run_id}",
    ):
        answer = await stack.http.get(url, headers=south)
        assert answer.status_code == 200 and answer.json()["items"] == [], url
    # ...while this tenant sees them.
    assert (await stack.http.get(f"/v1/runs/{run_id}", headers=north_trigger)).status_code == 200

    cancelled = await stack.http.post(f"/v1/runs/{run_id}/cancel", headers=north_trigger)
    assert cancelled.status_code == 202
    with pytest.raises(WorkflowFailureError):
        await stack.client.get_workflow_handle(f"run-{run_id}").result()
    shown = (await stack.http.get(f"/v1/runs/{run_id}", headers=north_trigger)).json()
    assert shown["status"] == "cancelled"

    # South's agent, asked about north's ticket, finds nothing: the tools see only south's records.
    r = await stack.http.post(
        "/v1/runs", json={"agent": "support_drafting", "input": {"ticket_id": "T-1002"}}, headers=south
    )
    assert r.status_code == 201, r.text
    await stack.client.get_workflow_handle(f"run-{r.json()['id']}").result()
    probe = (await stack.http.get(f"/v1/runs/{r.json()['id']}", headers=south)).json()
    assert probe["status"] == "completed" and "could not find ticket T-1002" in probe["output"]["reply"]
    assert (await stack.http.get(f"/v1/approvals?run_id={probe['id']}", headers=south)).json()["items"] == []
    async with stack.store.sessions() as s:
        tools = set(await s.scalars(select(Effect.tool).where(Effect.tenant_id == "south")))
    assert tools == set()


async def test_webhooks_from_the_cli(stack: Stack) -> None:
    await _key(stack, "north", "admin")
    await _key(stack, "south", "admin")
    allow = {"COUNTERSIGN_WEBHOOK_ALLOW_PRIVATE": "true"}
    refused = await asyncio.to_thread(
        cli, stack, "webhooks", "add", "--tenant", "north", "--url", "http://127.0.0.1:9/hook"
    )
    assert refused.returncode == 2 and "--url:" in refused.stderr and "loopback" in refused.stderr
    added = await asyncio.to_thread(
        cli,
        stack,
        *(
            "webhooks",
            "add",
            "--tenant",
            "north",
            "--url",
            "http://127.0.0.1:9/hook",
            "--event",
            "run.completed",
        ),
        **allow,
    )
    assert added.returncode == 0, added.stderr
    endpoint_id = added.stdout.split()[2]
    assert added.stdout.strip().splitlines()[-1].startswith("whsec_")

    north = await asyncio.to_thread(cli, stack, "webhooks", "list", "--tenant", "north")
    south = await asyncio.to_thread(cli, stack, "webhooks", "list", "--tenant", "south")
    assert endpoint_id in north.stdout and "run.completed" in north.stdout and "whsec_" not in north.stdout
    assert endpoint_id not in south.stdout
    wrong = await asyncio.to_thread(cli, stack, "webhooks", "remove", endpoint_id, "--tenant", "south")
    assert wrong.returncode == 1
    removed = await asyncio.to_thread(cli, stack, "webhooks", "remove", endpoint_id, "--tenant", "north")
    assert removed.returncode == 0 and endpoint_id in removed.stdout
    after = await asyncio.to_thread(cli, stack, "webhooks", "list", "--tenant", "north")
    assert endpoint_id not in after.stdout


async def test_keys_revoke_accepts_what_keys_list_prints(stack: Stack) -> None:
    made = []
    for _ in range(3):
        header, prefix = await _key(stack, "north", "trigger")
        made.append((header["Authorization"].removeprefix("Bearer "), prefix))
    listed = await asyncio.to_thread(cli, stack, "keys", "list", "--tenant", "north")
    printed = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert sorted(printed) == sorted(p for _, p in made)
    # The printed prefix, the key's visible start, and the whole key all name the key.
    for (secret, prefix), form in zip(made, ("{p}", "cs_{p}", "{k}"), strict=True):
        done = await asyncio.to_thread(cli, stack, "keys", "revoke", form.format(p=prefix, k=secret))
        assert done.returncode == 0 and f"revoked {prefix}" in done.stdout, done.stderr
        r = await stack.http.get("/v1/runs", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 401
    unknown = await asyncio.to_thread(cli, stack, "keys", "revoke", "cs_00000000")
    assert unknown.returncode == 1 and "'00000000'" in unknown.stderr
