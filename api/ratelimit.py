"""An in-process token bucket per principal (each API replica limits on its own)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """``per_minute`` tokens per key, refilled continuously; a full bucket allows a burst of that size."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float | None:
        """Take one token for ``key``: None when allowed, else the seconds until a token is available.

        No await happens here, so concurrent requests on the event loop cannot both take the last token.
        """
        if self.per_minute <= 0:
            return None
        rate = self.per_minute / 60.0
        now = self.clock()
        tokens, stamp = self._buckets.get(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - stamp) * rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:
            self._prune(now, rate)
        return None

    def _prune(self, now: float, rate: float) -> None:
        # A bucket that has refilled completely is the same as no bucket: drop it to bound memory.
        full = [k for k, (t, s) in self._buckets.items() if t + (now - s) * rate >= self.per_minute]
        for k in full:
            del self._buckets[k]
