"""The loop watchdog catches a blocking call (so a check that cannot fail is not what guards the suite)."""

from __future__ import annotations

import asyncio
import gc
import time

from tests.loopwatch import LoopWatch


async def test_a_blocking_call_is_caught_with_its_stack() -> None:
    watch = LoopWatch(asyncio.get_running_loop(), threshold=0.2, packages=("tests",))
    watch.start()
    try:
        await asyncio.sleep(0.1)
        time.sleep(0.5)  # noqa: ASYNC251 - what a synchronous flush or lock wait does to the loop
        await asyncio.sleep(0.1)
        blocks = watch.take()
        assert len(blocks) == 1 and blocks[0].seconds >= 0.2
        assert "test_a_blocking_call_is_caught_with_its_stack" in blocks[0].stack
        await asyncio.sleep(0.3)  # awaiting is not blocking
        assert watch.take() == []
    finally:
        watch.stop()


async def test_a_garbage_collection_pause_is_not_a_blocking_call() -> None:
    watch = LoopWatch(asyncio.get_running_loop(), threshold=0.2, packages=("tests",))
    watch.start()
    try:
        await asyncio.sleep(0.1)
        # A collection pass that takes longer than the threshold (its callback stands in for a large heap).
        gc.callbacks.append(_slow_gc)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(_slow_gc)
        await asyncio.sleep(0.1)
        assert watch.take() == []
    finally:
        watch.stop()


def _slow_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        time.sleep(0.5)
