"""A watchdog for the test session's event loop: any call that holds the loop longer than a threshold while
our code is on the stack fails the test it happened in.

A thread asks the loop to run a tiny callback every few milliseconds. When the loop has not run it after
``threshold`` seconds, something is blocking the loop; the thread samples the loop thread's stack and, when a
frame of one of ``packages`` is on it, records the block with that stack. This catches what asyncio's debug
mode reports as slow callbacks (a synchronous flush, a blocking wait on another thread, sync I/O) without
debug mode's cost on every test.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "workers", "agents", "tools", "approvals", "countersign")


@dataclass
class Block:
    """One blocking of the loop: for how long, and the loop thread's stack when it was seen."""

    seconds: float
    stack: str


@dataclass
class LoopWatch:
    """Watches one event loop from a thread of its own."""

    loop: asyncio.AbstractEventLoop
    threshold: float = 1.0
    packages: tuple[str, ...] = PACKAGES
    blocks: list[Block] = field(default_factory=list)
    _beat: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event)
    _loop_thread: int = 0

    def start(self) -> None:
        self._loop_thread = threading.get_ident()  # called from the loop's thread
        threading.Thread(target=self._watch, name="loop-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _tick(self) -> None:
        self._beat = time.monotonic()

    def _ours(self, frames: list[traceback.FrameSummary]) -> bool:
        roots = [str(ROOT / p) + "/" for p in self.packages]
        return any(any(f.filename.startswith(r) for r in roots) for f in frames)

    def _watch(self) -> None:
        reported_for = -1.0
        while not self._stop.wait(0.02):
            try:
                self.loop.call_soon_threadsafe(self._tick)
            except RuntimeError:  # the loop is closed
                return
            lag = time.monotonic() - self._beat
            if lag < self.threshold or reported_for == self._beat:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:
                continue
            frames = traceback.extract_stack(frame)
            if self._ours(frames):
                reported_for = self._beat  # one report per blocking
                self.blocks.append(Block(lag, "".join(traceback.format_list(frames[-12:]))))

    def take(self) -> list[Block]:
        """The blocks seen since the last call."""
        seen, self.blocks = self.blocks, []
        return seen
