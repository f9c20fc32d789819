"""The LangGraph plugin's task cache: our key (as discriminating as the plugin's, without message reprs), and
the switch that turns the cache off for runs that never continue as new."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from temporalio.langgraph import _activity, _task_cache

from tests.conftest import Stack
from workers.task_cache import install, task_cache_key, without_task_cache


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


def test_the_plugin_calls_the_installed_key_function_and_the_cache_it_switches_off() -> None:
    install()
    assert getattr(_activity, "cache_key") is task_cache_key  # noqa: B009
    # The node wrapper looks these up by name in its module at every call, and the cache in the context.
    [wrapper] = [c for c in _activity.wrap_execute_activity.__code__.co_consts if hasattr(c, "co_names")]
    assert {"cache_key", "cache_lookup", "cache_put"} <= set(wrapper.co_names)
    assert _activity.cache_lookup is _task_cache.cache_lookup and _activity.cache_put is _task_cache.cache_put


def test_without_the_cache_no_key_is_made_and_nothing_is_kept() -> None:
    def in_a_workflow() -> None:
        _task_cache.set_task_cache({})  # as the plugin's graph() does
        args = (_state('{"found": true}'),)
        key = task_cache_key("agents.graph.act", args, {}, None)
        assert key
        _task_cache.cache_put(key, "result")
        assert _task_cache.cache_lookup(key) == (True, "result")

        without_task_cache()
        assert task_cache_key("agents.graph.act", args, {}, None) == ""
        _task_cache.cache_put("", "result")
        assert _task_cache.cache_lookup("") == (False, None)
        assert _task_cache.get_task_cache() is None

    contextvars.copy_context().run(in_a_workflow)


def test_equal_calls_share_a_key_and_any_difference_changes_it() -> None:
    def in_a_workflow() -> None:
        _task_cache.set_task_cache({})  # runs from before NO_TASK_CACHE keep the cache
        ctx = {"run_id": "r1", "tenant_id": "acme"}
        key = task_cache_key("agents.graph.act", (_state('{"found": true}'),), {"config": {}}, ctx)
        assert key == task_cache_key("agents.graph.act", (_state('{"found": true}'),), {"config": {}}, ctx)
        assert key != task_cache_key("agents.graph.act", (_state('{"found": false}'),), {"config": {}}, ctx)
        assert key != task_cache_key("agents.graph.think", (_state('{"found": true}'),), {"config": {}}, ctx)
        assert key != task_cache_key(
            "agents.graph.act", (_state('{"found": true}'),), {"config": {}}, {"run_id": "r2"}
        )

    contextvars.copy_context().run(in_a_workflow)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_new_run_keys_and_keeps_nothing(
    stack: Stack, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys: list[str] = []

    def counted(*args: Any) -> str:
        keys.append(task_cache_key(*args))
        return keys[-1]

    # Workers run workflows outside the sandbox: the plugin's wrapper sees this module attribute.
    monkeypatch.setattr(_activity, "cache_key", counted)
    run = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    assert (await stack.result(run["id"]))["status"] == "completed"
    assert keys and set(keys) == {""}, "a run from NO_TASK_CACHE on hashed its state for the task cache"
