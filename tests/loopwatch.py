"""A watchdog for the test session's event loop: one callback that holds the loop longer than a threshold
while our code is on the stack fails the test it happened in.

Every callback the loop runs is timed (``asyncio.Handle._run`` is wrapped to note when the current one
started). A thread checks every few milliseconds; when the loop's current callback has run for ``threshold``
seconds, it samples the loop thread's stack and, when a frame of one of ``packages`` is on it, records the
block with that stack. This is what asyncio's debug mode reports as a slow callback (a synchronous flush, a
blocking wait on another thread, sync I/O) without debug mode's cost on every test; a loop that is merely
busy with many short callbacks is not a block.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "workers", "agents", "tools", "approvals", "countersign")

# Thread id → when the callback that thread's loop is running started, and the garbage collector's total
# pause time then.
_running: dict[int, tuple[float, float]] = {}
_original_run = asyncio.Handle._run
# Seconds the cyclic garbage collector has held the interpreter, in all; and when the current pass began.
_gc = {"total": 0.0, "began": 0.0, "running": 0.0}


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc["began"], _gc["running"] = time.monotonic(), 1.0
    else:
        _gc["total"] += time.monotonic() - _gc["began"]
        _gc["running"] = 0.0


def _gc_seconds_since(started: float, total_then: float) -> float:
    """How long collection passes have held the interpreter since ``started`` (the current one included)."""
    current = time.monotonic() - max(_gc["began"], started) if _gc["running"] else 0.0
    return _gc["total"] - total_then + current


def _timed_run(self: asyncio.Handle) -> None:
    ident = threading.get_ident()
    _running[ident] = (time.monotonic(), _gc["total"])
    try:
        _original_run(self)
    finally:
        _running.pop(ident, None)


asyncio.Handle._run = _timed_run  # type: ignore[method-assign]
# A collection pass is the interpreter's pause, not a blocking call of ours: it is not counted against the
# callback it interrupted (with a large heap a full pass takes seconds, whichever callback allocates).
gc.callbacks.append(_gc_timer)


@dataclass
class Block:
    """One blocking of the loop: for how long, and the loop thread's stack when it was seen."""

    seconds: float
    stack: str


@dataclass
class LoopWatch:
    """Watches one event loop from a thread of its own."""

    loop: asyncio.AbstractEventLoop
    # The faults this guards against block for seconds (a flush waiting on a lock: 5-30 s). On a busy 2-core
    # CI machine, a callback can lose the CPU for about a second to the Temporal server and PostgreSQL.
    threshold: float = 2.0
    packages: tuple[str, ...] = PACKAGES
    blocks: list[Block] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _loop_thread: int = 0

    def start(self) -> None:
        self._loop_thread = threading.get_ident()  # called from the loop's thread
        threading.Thread(target=self._watch, name="loop-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _ours(self, frames: list[traceback.FrameSummary]) -> bool:
        roots = [str(ROOT / p) + "/" for p in self.packages]
        return any(any(f.filename.startswith(r) for r in roots) for f in frames)

    def _watch(self) -> None:
        reported_for = -1.0
        while not self._stop.wait(0.02):
            running = _running.get(self._loop_thread)
            if running is None or running[0] == reported_for:
                continue
            started, gc_then = running
            took = time.monotonic() - started - _gc_seconds_since(started, gc_then)
            if took < self.threshold:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:
                continue
            frames = traceback.extract_stack(frame)
            if self._ours(frames):
                reported_for = started  # one report per callback
                self.blocks.append(Block(took, "".join(traceback.format_list(frames[-40:]))))

    def take(self) -> list[Block]:
        """The blocks seen since the last call."""
        seen, self.blocks = self.blocks, []
        return seen
