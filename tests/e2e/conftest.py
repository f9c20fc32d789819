"""Fixtures of the end-to-end tests: a local webhook receiver."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """A local HTTP server answering 500 to the first ``failures`` requests of each webhook-id, then 200."""

    failures: int
    loop: asyncio.AbstractEventLoop
    requests: list[Received] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        seen = sum(1 for r in self.requests if r.headers.get("webhook-id") == headers.get("webhook-id"))
        status = 500 if seen < self.failures else 200
        self.requests.append(Received(headers, body, status))
        self.loop.call_soon_threadsafe(self.changed.set)
        return status

    def delivered(self) -> dict[str, list[Received]]:
        """Every request, grouped by webhook-id, for the ids that got a 200."""
        ids = {r.headers["webhook-id"] for r in self.requests if r.answered == 200}
        return {i: [r for r in self.requests if r.headers["webhook-id"] == i] for i in ids}

    async def wait_delivered(self, count: int, timeout: float = 60) -> dict[str, list[Received]]:
        """Wait (on the receiver's own signal) until ``count`` distinct events were answered 200."""
        async with asyncio.timeout(timeout):
            while len(self.delivered()) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.delivered()


@contextmanager
def _serving(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/countersign"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
async def flaky_receiver() -> AsyncIterator[Receiver]:
    """Down (500) for the first two attempts of every event."""
    with _serving(Receiver(failures=2, loop=asyncio.get_running_loop())) as r:
        yield r


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """Answers 200 at once."""
    with _serving(Receiver(failures=0, loop=asyncio.get_running_loop())) as r:
        yield r
