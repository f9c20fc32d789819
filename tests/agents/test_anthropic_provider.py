"""The Anthropic provider path: langchain-anthropic over HTTP against a local Messages-API stub server.

The stub answers ``/v1/messages`` with what the agent's playbook would say for the conversation it is sent
(``tool_use`` blocks included) and reports token usage, so a run goes through Anthropic's client, its message
and tool-result serialisation, the Temporal activities and usage accounting, with no key and no network.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What `countersign worker` does at start (agents.models.warm): the SDK is imported before any loop runs.
import langchain_anthropic  # noqa: F401
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from agents.catalog import AGENTS
from tests.conftest import Stack


@dataclass
class Stub:
    """A running Messages-API stub: its URL and the requests it got."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if b.get("type") == "text")


def _conversation(body: dict[str, Any]) -> list[BaseMessage]:
    """The Messages-API conversation as LangChain messages (what the playbook reads)."""
    out: list[BaseMessage] = []
    for m in body["messages"]:
        blocks = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        if m["role"] == "assistant":
            calls = [
                {"id": b["id"], "name": b["name"], "args": b["input"]}
                for b in blocks
                if b["type"] == "tool_use"
            ]
            out.append(AIMessage(content=_text(blocks), tool_calls=calls))
            continue
        results = [b for b in blocks if b["type"] == "tool_result"]
        for b in results:
            status = "error" if b.get("is_error") else "success"
            out.append(
                ToolMessage(
                    content=_text(b.get("content") or ""), tool_call_id=b["tool_use_id"], status=status
                )
            )
        if not results:
            out.append(HumanMessage(content=_text(blocks)))
    return out


def _answer(stub: Stub, body: dict[str, Any]) -> dict[str, Any]:
    system = _text(body.get("system") or "")
    spec = next(s for s in AGENTS.values() if s.prompt == system)
    reply = spec.playbook(_conversation(body))
    content: list[dict[str, Any]] = [{"type": "text", "text": str(reply.content)}] if reply.content else []
    content += [
        {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["args"]} for c in reply.tool_calls
    ]
    return {
        "id": f"msg_{len(stub.requests)}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": len(json.dumps(body["messages"])) // 4 + 3, "output_tokens": 11},
    }


@pytest.fixture
def anthropic_stub() -> Iterator[Stub]:
    """An Anthropic Messages-API server on loopback."""
    stub = Stub(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.requests.append(body)
            stub.headers.append({k.lower(): v for k, v in self.headers.items()})
            if self.path.rstrip("/").endswith("/v1/messages"):
                status, payload = 200, _answer(stub, body)
            else:
                status, payload = (
                    404,
                    {"type": "error", "error": {"type": "not_found_error", "message": "no"}},
                )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        thread.join()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_refund_run_over_the_anthropic_messages_api(
    make_stack: Any, db_url: str, anthropic_stub: Stub
) -> None:
    async with make_stack(
        db_url,
        model="anthropic:claude-haiku-4-5",
        model_base_url=anthropic_stub.url,
        model_api_key="sk-ant-test",
    ) as stack:
        stack: Stack
        run = await stack.start("support_drafting", {"ticket_id": "T-1002"})
        [item] = await stack.pending(run["id"])
        assert item["tool"] == "issue_refund" and item["arguments"]["amount"] == 250.0
        r = await stack.http.post(
            f"/v1/approvals/{item['id']}/decisions",
            json={"action": "approve", "arguments_hash": item["arguments_hash"]},
            headers=stack.auth("alice"),
        )
        assert r.status_code == 201
        done = await stack.result(run["id"])
    assert done["status"] == "completed" and done["output"]["escalated"] is False
    assert "refunded 250.00" in done["output"]["reply"]
    # Anthropic's own request shape: the key, an anthropic-version, the prompt as `system`, tools by name.
    first = anthropic_stub.requests[0]
    sent = anthropic_stub.headers[0]
    assert (
        "sk-ant-test" in (sent.get("x-api-key") or sent.get("authorization", ""))
        and sent["anthropic-version"]
    )
    assert first["model"] == "claude-haiku-4-5" and first["system"]
    assert {"get_ticket", "issue_refund", "final_answer"} <= {t["name"] for t in first["tools"]}
    # The tool results went back as tool_result blocks, and the run counted the tokens the API reported.
    assert any(
        b.get("type") == "tool_result"
        for m in anthropic_stub.requests[-1]["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
    )
    assert done["usage"]["input_tokens"] > 0 and done["usage"]["output_tokens"] == 11 * len(
        anthropic_stub.requests
    )
    # Priced as the settings say for this model (USD per million tokens).
    expected = (done["usage"]["input_tokens"] * 1.0 + done["usage"]["output_tokens"] * 5.0) / 1e6
    assert done["usage"]["cost_usd"] == pytest.approx(expected)
