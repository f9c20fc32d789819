"""GET /metrics: Prometheus series from the stored records, each thing counted once (replays of every workflow
task and repeated decision requests included), bounded labels, and the optional scrape token."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stack, worker_process


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as (name, sorted labels) → value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_each_thing_once(make_stack: Any, db_url: str) -> None:
    # No workflow stays cached: every workflow task replays the run's history from the start.
    async with make_stack(db_url, worker_max_cached_workflows=0, metrics_cache_seconds=0) as stack:
        stack: Stack
        gated = await stack.start("support_drafting", {"ticket_id": "T-1002"})
        plain = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        [item] = await stack.pending(gated["id"])
        body = {"action": "approve", "arguments_hash": item["arguments_hash"]}
        url = f"/v1/approvals/{item['id']}/decisions"
        first = await stack.http.post(url, json=body, headers=stack.auth("alice"))
        again = await stack.http.post(url, json=body, headers=stack.auth("alice"))
        assert (first.status_code, again.status_code) == (201, 200)
        for run in (gated, plain):
            assert (await stack.result(run["id"]))["status"] == "completed"
        r = await stack.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    found = samples(r.text)
    agent = {"agent": "support_drafting"}
    refund = agent | {"tool": "issue_refund"}
    assert value(found, "countersign_runs_started_total", **agent) == 2
    assert value(found, "countersign_runs_finished_total", **agent, outcome="completed") == 2
    assert value(found, "countersign_approval_requests_total", **refund) == 1
    assert value(found, "countersign_approval_decisions_total", **refund, decision="approve") == 1
    assert (
        value(found, "countersign_approval_time_to_decision_seconds_count", **refund, decision="approve") == 1
    )
    assert (
        value(
            found,
            "countersign_approval_time_to_decision_seconds_bucket",
            **refund,
            decision="approve",
            le="60.0",
        )
        == 1
    )
    assert ("countersign_approvals_pending", tuple(sorted(refund.items()))) in found
    assert value(found, "countersign_approvals_pending", **refund) == 0
    assert value(found, "countersign_gate_verdicts_total", **refund, verdict="require_approval") == 1
    assert value(found, "countersign_gate_verdicts_total", **agent, tool="get_ticket", verdict="allow") == 2
    assert value(found, "countersign_tool_calls_total", **refund, outcome="success") == 1
    assert value(found, "countersign_run_wall_seconds_count", **agent) == 2
    assert value(found, "countersign_run_active_seconds_count", **agent) == 2
    assert value(found, "countersign_run_cost_usd_count", **agent) == 2
    assert value(found, "countersign_model_calls_total", **agent, model="scripted") >= 4
    # Labels stay bounded: nothing names a run, a request, a tenant or a person.
    labels = {k for (_, ls) in found for k, _ in ls}
    assert labels <= {
        "agent",
        "tool",
        "decision",
        "outcome",
        "state",
        "verdict",
        "model",
        "reason",
        "type",
        "le",
    }
    for ident in (gated["id"], item["id"], "acme", *stack.principals.values()):
        assert ident not in r.text


async def test_metrics_pending_gauges_and_the_scrape_token(make_stack: Any, sqlite_url: str) -> None:
    async with make_stack(sqlite_url, metrics_token="scrape-me", metrics_cache_seconds=0) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1004"})
        await stack.pending(run["id"])
        assert (await stack.http.get("/metrics")).status_code == 401
        assert (await stack.http.get("/metrics", headers={"Authorization": "Bearer nope"})).status_code == 401
        r = await stack.http.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    found = samples(r.text)
    refund = {"agent": "support_drafting", "tool": "issue_refund"}
    assert value(found, "countersign_approvals_pending", **refund) == 1
    assert value(found, "countersign_runs_in_state", agent="support_drafting", state="awaiting_approval") == 1
    assert (
        value(found, "countersign_approval_oldest_pending_timestamp_seconds", agent="support_drafting")
        > 1.7e9
    )


async def test_a_worker_serves_model_and_temporal_sdk_metrics(make_stack: Any, sqlite_url: str) -> None:
    async with make_stack(sqlite_url, worker=False) as stack:
        port = free_port_pair()
        proc = worker_process(stack, COUNTERSIGN_WORKER_METRICS_PORT=str(port))
        try:
            run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
            assert (await stack.result(run["id"]))["status"] == "completed"
            async with httpx.AsyncClient(timeout=10) as http:
                ours = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                sdk = (await http.get(f"http://127.0.0.1:{port + 1}/metrics")).text
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
    found = samples(ours)
    chat = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "scripted",
        "gen_ai_request_model": "scripted",
        "gen_ai_agent_name": "support_drafting",
    }
    durations = [
        v
        for (n, ls), v in found.items()
        if n == "gen_ai_client_operation_duration_seconds_count" and dict(ls).items() >= chat.items()
    ]
    assert durations and durations[0] >= 4, ours[:2000]
    assert any(n == "gen_ai_client_token_usage_count" for n, _ in found)
    # The Temporal SDK's own series: counters end in _total, latencies are in seconds (sub-second buckets).
    sdk_found = samples(sdk)
    assert any(n == "temporal_workflow_completed_total" and v >= 1 for (n, _), v in sdk_found.items())
    assert any(
        n == "temporal_workflow_task_execution_latency_bucket" and dict(ls)["le"] == "0.001"
        for (n, ls), _ in sdk_found.items()
    )
    assert any(n == "temporal_num_pollers" for n, _ in sdk_found)


def free_port_pair() -> int:
    """A port whose next port is free too."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise AssertionError("no free pair of ports")
