"""The LangGraph plugin's task-cache key is ours: as discriminating as the plugin's, without message reprs."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from temporalio.langgraph import _activity

from workers.worker import _install_task_cache_key, task_cache_key


def _state(result: str) -> dict[str, object]:
    call = {"name": "get_ticket", "args": {"ticket_id": "T-1001"}, "id": "call_1"}
    return {
        "messages": [
            HumanMessage(content='{"ticket_id": "T-1001"}', id="m0"),
            AIMessage(content="", tool_calls=[call], id="m1"),
            ToolMessage(content=result, tool_call_id="call_1", id="m2"),
        ],
        "verdicts": {},
    }


def test_the_plugin_calls_the_installed_key_function() -> None:
    _install_task_cache_key()
    assert getattr(_activity, "cache_key") is task_cache_key  # noqa: B009
    # The node wrapper looks the function up by this name in its module at every call.
    [wrapper] = [c for c in _activity.wrap_execute_activity.__code__.co_consts if hasattr(c, "co_names")]
    assert "cache_key" in wrapper.co_names


def test_equal_calls_share_a_key_and_any_difference_changes_it() -> None:
    ctx = {"run_id": "r1", "tenant_id": "acme"}
    key = task_cache_key("agents.graph.act", (_state('{"found": true}'),), {"config": {}}, ctx)
    assert key == task_cache_key("agents.graph.act", (_state('{"found": true}'),), {"config": {}}, ctx)
    assert key != task_cache_key("agents.graph.act", (_state('{"found": false}'),), {"config": {}}, ctx)
    assert key != task_cache_key("agents.graph.think", (_state('{"found": true}'),), {"config": {}}, ctx)
    assert key != task_cache_key(
        "agents.graph.act", (_state('{"found": true}'),), {"config": {}}, {"run_id": "r2"}
    )
