"""The LangGraph plugin's task-result cache, which runs do not use.

The plugin keeps each node call's result in a per-workflow cache, keyed by a hash of the call's arguments (the
whole state), so that a workflow that continues as new does not run its finished nodes again. Runs never
continue as new: for them the key is a JSON dump and a hash of the state per node call, and the cache a second
copy of every result, held for as long as the workflow stays cached. Runs from ``NO_TASK_CACHE`` on turn it
off; earlier runs keep it (with the cheaper key below), so they replay exactly as they ran.

The plugin offers no switch for either (temporalio.langgraph 0.1): both go through its private modules, and
tests/workers/test_task_cache.py fails if the plugin stops calling them as assumed here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel
from temporalio.langgraph import _activity, _task_cache


def task_cache_key(task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], context: Any = None) -> str:
    """The plugin's task-cache key over the same inputs, with pydantic models (the state's messages) written
    as their fields rather than their ``str()``; no key at all (``""``) when the cache is off.

    The plugin's own key is a JSON dump made with ``default=str``. A message's ``str()`` asks pydantic for
    each field's default, which inspects the default factory's signature every time: about 1 ms per call for a
    state of ten messages. The key only has to tell calls apart within a run; equal states still give equal
    keys, different ones different keys.
    """
    if _task_cache.get_task_cache() is None:
        return ""  # nothing is looked up or kept: see without_task_cache
    try:
        text = json.dumps([task_id, args, kwargs, context], sort_keys=True, default=_plain)
    except (TypeError, ValueError):
        text = repr([task_id, args, kwargs, context])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _plain(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else str(value)


def install() -> None:
    """Make the plugin's node wrapper use ``task_cache_key``."""
    if getattr(_activity, "cache_key", None) is not task_cache_key:
        setattr(_activity, "cache_key", task_cache_key)  # noqa: B010


def without_task_cache() -> None:
    """Turn the cache off for the calling workflow, after it has fetched its graph (which sets one up)."""
    _task_cache.set_task_cache(None)
