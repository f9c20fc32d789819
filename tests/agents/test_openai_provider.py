"""The real provider path: langchain-openai over HTTP against a local OpenAI-compatible stub server.

The stub answers ``/v1/chat/completions`` with what the agent's playbook would say for the conversation it is
sent (tool calls included) and reports token usage, so the run goes through the real client, serialisation,
Temporal activities and usage accounting.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_openai.chat_models.base import _convert_dict_to_message
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from agents.catalog import AGENTS
from agents.spec import FINAL_ANSWER


@dataclass
class Stub:
    """A running stub: its URL, the requests it got, and how many to fail first (HTTP 500)."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    fail_first: int = 0
    usage: list[tuple[int, int]] = field(default_factory=list)
    # A model with a mind of its own: changes the final answer the offline playbook would give.
    decide: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def _answer(stub: Stub, body: dict[str, Any]) -> dict[str, Any]:
    messages = [_convert_dict_to_message(m) for m in body["messages"]]
    spec = next(s for s in AGENTS.values() if s.prompt == messages[0].content)
    reply = spec.playbook(messages[1:])
    if stub.decide is not None and [c["name"] for c in reply.tool_calls] == [FINAL_ANSWER]:
        call = reply.tool_calls[0]
        reply = AIMessage(content="", tool_calls=[{**call, "args": stub.decide(dict(call["args"]))}])
    prompt_tokens = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4 + 7
    completion_tokens = len(str(reply.content)) // 4 + 5 * len(reply.tool_calls) + 1
    stub.usage.append((prompt_tokens, completion_tokens))
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
            }
            for c in reply.tool_calls
        ]
    return {
        "id": f"chatcmpl-{len(stub.requests)}",
        "object": "chat.completion",
        "created": 1_764_000_000,
        "model": body["model"],
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@pytest.fixture
def stub_server() -> Iterator[Stub]:
    """An OpenAI-compatible chat-completions server on loopback."""
    stub = Stub(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.requests.append(body)
            stub.headers.append({k.lower(): v for k, v in self.headers.items()})
            if stub.fail_first > 0:
                stub.fail_first -= 1
                status, payload = 500, {"error": {"message": "upstream overloaded", "type": "server_error"}}
            elif self.path.rstrip("/").endswith("/chat/completions"):
                status, payload = 200, _answer(stub, body)
            else:
                status, payload = 404, {"error": {"message": "not found"}}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()


PRICE = {"openai:stub-model": {"input_per_million": 400.0, "output_per_million": 1600.0}}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_agent_runs_through_langchain_openai_over_http(
    make_stack: Any, db_url: str, stub_server: Stub
) -> None:
    async with make_stack(
        db_url,
        model="openai:stub-model",
        model_base_url=stub_server.url,
        model_api_key="sk-test-not-secret",
        prices=PRICE,
    ) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        done = await stack.result(run["id"])
    assert done["status"] == "completed", done
    assert "O-5001" in done["output"]["reply"]
    first = stub_server.requests[0]
    assert first["model"] == "stub-model"
    offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert set(offered) == set(AGENTS["support_drafting"].tools()) | {FINAL_ANSWER}
    answer = offered[FINAL_ANSWER]["parameters"]
    assert {"reply", "escalated", "reason"} <= set(answer["properties"])
    assert "citations" not in answer["properties"]  # the workflow resolves them from the reply
    assert stub_server.headers[0]["authorization"] == "Bearer sk-test-not-secret"
    calls = len(stub_server.usage)
    assert done["usage"]["model_calls"] == calls
    assert done["usage"]["input_tokens"] == sum(p for p, _ in stub_server.usage)
    assert done["usage"]["output_tokens"] == sum(c for _, c in stub_server.usage)
    expected = sum(p * 400 + c * 1600 for p, c in stub_server.usage) / 1e6
    assert done["usage"]["cost_usd"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_server_errors_are_retried_as_bounded_activity_retries(
    make_stack: Any, db_url: str, stub_server: Stub
) -> None:
    stub_server.fail_first = 1
    async with make_stack(
        db_url,
        model="openai:stub-model",
        model_base_url=stub_server.url,
        model_api_key="k",
        model_max_attempts=2,
    ) as stack:
        ok = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        assert (await stack.result(ok["id"]))["status"] == "completed"
        stub_server.fail_first = 10
        bad = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        # The provider stays down: the run goes to a person; rejecting it abandons the run.
        [item] = await stack.pending(bad["id"])
        assert item["tool"] == "escalate_to_person" and item["arguments"]["reason"] == "model_unavailable"
        reject = {"action": "reject", "arguments_hash": item["arguments_hash"], "reason": "customer called"}
        r = await stack.http.post(
            f"/v1/approvals/{item['id']}/decisions", json=reject, headers=stack.auth("alice")
        )
        assert r.status_code == 201, r.text
        failed = await stack.result(bad["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["reason"] == "abandoned" and failed["error"]["stopped"] == "model_unavailable"


@pytest.fixture(scope="module")
def meter_reader() -> InMemoryMetricReader:
    """The process's meter provider, read in memory (installed once: OpenTelemetry allows one per process)."""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


def _metric_sum(reader: InMemoryMetricReader, name: str) -> float:
    data = reader.get_metrics_data()
    total = 0.0
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    for point in m.data.data_points:
                        total += getattr(point, "value", None) or getattr(point, "count", 0)
    return total


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_fallback_model_answers_when_the_primary_fails(
    make_stack: Any, db_url: str, stub_server: Stub, meter_reader: InMemoryMetricReader
) -> None:
    async with make_stack(
        db_url,
        model="openai:broken",
        model_base_url=stub_server.url,
        model_api_key="k",
        model_fallback="openai:stub-model",
        model_max_attempts=1,
    ) as stack:
        stub_server.fail_first = 1  # the first call (to the primary) fails; the fallback answers it
        run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        done = await stack.result(run["id"])
    assert done["status"] == "completed"
    assert [r["model"] for r in stub_server.requests[:2]] == ["broken", "stub-model"]
    # The worker counts the call the fallback answered (once: later calls went to the primary first).
    assert _metric_sum(meter_reader, "countersign.model.fallbacks") == 1
    assert _metric_sum(meter_reader, "gen_ai.client.operation.duration") >= 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_output_is_the_models_decision_not_the_playbooks(
    make_stack: Any, db_url: str, stub_server: Stub
) -> None:
    """A model that escalates a ticket the offline playbook would answer: the output follows the model."""

    def escalate(answer: dict[str, Any]) -> dict[str, Any]:
        return answer | {"escalated": True, "reason": "the customer mentions a chargeback"}

    stub_server.decide = escalate
    async with make_stack(
        db_url, model="openai:stub-model", model_base_url=stub_server.url, model_api_key="k"
    ) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        done = await stack.result(run["id"])
    assert done["status"] == "completed"
    assert (done["output"]["escalated"], done["output"]["reason"]) == (
        True,
        "the customer mentions a chargeback",
    )
    # The facts the workflow knows are still its own: the passages cited, the tools used.
    assert done["output"]["citations"] and done["output"]["tools_used"] == [
        "get_order",
        "get_ticket",
        "search_policies",
    ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_answer_that_contradicts_the_record_is_sent_back_then_escalated(
    make_stack: Any, db_url: str, stub_server: Stub
) -> None:
    def invent(answer: dict[str, Any]) -> dict[str, Any]:
        return answer | {"reply": answer["reply"] + " See also [refund-policy#no-such-section]."}

    stub_server.decide = invent
    async with make_stack(
        db_url, model="openai:stub-model", model_base_url=stub_server.url, model_api_key="k"
    ) as stack:
        run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
        [item] = await stack.pending(run["id"])
    assert item["tool"] == "escalate_to_person" and "unresolved_citations" in item["arguments"]["errors"]
    # The model was told what to fix, as a tool result answering its final_answer call.
    feedback = stub_server.requests[-1]["messages"][-1]
    assert feedback["role"] == "tool" and "not valid" in feedback["content"]
