"""``GET /metrics``: Prometheus text format, for the scraper (optionally behind a bearer token)."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from api.errors import Unauthorized
from api.services import metrics
from countersign.settings import Settings

router = APIRouter(tags=["operations"])


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


class ScrapeCache:
    """The last scrape's text, served again within ``seconds``: several scrapers (or replicas behind one
    address) do not each rerun every aggregate query."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = asyncio.Lock()
        self.text = b""
        self.at = -1e18


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    """Runs, approvals, gate verdicts, tool calls and model usage, aggregated from the database."""
    settings: Settings = request.app.state.settings
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if token:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.encode()):
            raise Unauthorized("send Authorization: Bearer <metrics token>")
    cache: ScrapeCache = request.app.state.metrics_cache
    async with cache.lock:
        if time.monotonic() - cache.at > cache.seconds:
            async with request.app.state.read_sessions() as s:
                families = await metrics.collect(s)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Families(families))
            cache.text, cache.at = generate_latest(registry), time.monotonic()
    return Response(cache.text, media_type=CONTENT_TYPE_LATEST)
