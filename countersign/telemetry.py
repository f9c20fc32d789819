"""OpenTelemetry set-up: OTLP export when configured, and always the embedded span store in the database.

The embedded store lets an auditor read a run's trace (``GET /v1/runs/{id}/trace``) with no tracing backend.
Spans are written by a batch processor from its own thread; the writer owns a private event loop and engine so
span export never blocks, or re-enters, the application's loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from sqlalchemy import JSON, Index, String, Text, delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from countersign.db import Base, insert_ignore, make_engine, utcnow

log = logging.getLogger("countersign.telemetry")

RUN_ID = "countersign.run_id"


class SpanRecord(Base):
    """One finished span in the embedded store."""

    __tablename__ = "spans"
    __table_args__ = (Index("ix_spans_run_id", "run_id"), Index("ix_spans_start_time", "start_time"))

    trace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    span_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    parent_span_id: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20))
    start_time: Mapped[dt.datetime]
    end_time: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(10))
    status_message: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON)
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    service: Mapped[str] = mapped_column(String(100))
    run_id: Mapped[str | None] = mapped_column(String(36))


def _ts(ns: int | None) -> dt.datetime:
    return dt.datetime.fromtimestamp((ns or 0) / 1e9, tz=dt.UTC)


def _row(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (span.attributes or {}).items()}
    return {
        "trace_id": format(ctx.trace_id if ctx else 0, "032x"),
        "span_id": format(ctx.span_id if ctx else 0, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "name": span.name[:300],
        "kind": span.kind.name.lower(),
        "start_time": _ts(span.start_time),
        "end_time": _ts(span.end_time),
        "status": span.status.status_code.name.lower(),
        "status_message": span.status.description,
        "attributes": attrs,
        "events": [
            {"name": e.name, "time": _ts(e.timestamp).isoformat(), "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
        "service": str(span.resource.attributes.get("service.name", "countersign")),
        "run_id": attrs.get(RUN_ID),
    }


SPAN_KEY = ["trace_id", "span_id"]


async def store_span(session: AsyncSession, span: ReadableSpan) -> None:
    """Write a finished span into the embedded store in the caller's transaction (for a span that must exist
    when the change it describes does; the exporter's later copy of it is ignored)."""
    await insert_ignore(session, SpanRecord, SPAN_KEY, [_row(span)], pipelined=True)


class DatabaseSpanExporter(SpanExporter):
    """Writes finished spans into the ``spans`` table (upsert, so a re-export is harmless)."""

    def __init__(self, url: str, retention_days: int = 30) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="span-store", daemon=True)
        self._thread.start()
        self._engine: AsyncEngine | None = None
        self._url = url
        self.retention = dt.timedelta(days=retention_days)
        self._lock = threading.Lock()
        self._pruned_at: dt.datetime | None = None

    def retarget(self, url: str) -> None:
        """Write to another database from now on (tests build one stack per database in one process)."""
        with self._lock:
            if url == self._url:
                return
            old, self._engine, self._url = self._engine, None, url
        if old is not None:
            # Disposed on the writer's own loop, without waiting: the caller may be an event loop whose
            # coroutines hold the very database lock an export in progress is waiting for.
            asyncio.run_coroutine_threadsafe(old.dispose(), self._loop)

    def _call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout=30)

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            if self._engine is None:
                self._engine = make_engine(self._url)
            engine = self._engine
        async with engine.begin() as conn:
            await insert_ignore(conn, SpanRecord, SPAN_KEY, rows)
            now = utcnow()
            if self._pruned_at is None or now - self._pruned_at > dt.timedelta(hours=1):
                self._pruned_at = now
                await conn.execute(delete(SpanRecord).where(SpanRecord.end_time < now - self.retention))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write a batch; failures are logged, never raised into the application."""
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            self._call(self._write([_row(s) for s in spans]))
        except Exception as e:  # the span store must never take the service down
            log.warning("span store write failed: %s: %s", type(e).__name__, str(e)[:300])
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Dispose of the engine and stop the writer loop."""
        if self._engine is not None:
            self._call(self._engine.dispose())
        self._loop.call_soon_threadsafe(self._loop.stop)


_provider: TracerProvider | None = None
_store: DatabaseSpanExporter | None = None


def configure(service: str, database_url: str, retention_days: int = 30) -> TracerProvider:
    """Install the process's tracer provider once; later calls only re-point the embedded store.

    OTLP export is added when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces-specific variable) is set;
    ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` selects gRPC, anything else HTTP/protobuf.
    """
    global _provider, _store
    if _provider is not None and _store is not None:
        _store.retarget(database_url)
        return _provider
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    _store = DatabaseSpanExporter(database_url, retention_days)
    provider.add_span_processor(BatchSpanProcessor(_store, schedule_delay_millis=200))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def serve_metrics(service: str, host: str, port: int) -> None:
    """Install the process's meter provider with a Prometheus reader and serve ``/metrics`` on ``port``
    (the process's own metrics: model duration and token usage per the GenAI conventions, fallbacks).

    The HTTP server runs on its own thread, off the event loop; a scrape only reads counters in memory.
    """
    from opentelemetry import metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from prometheus_client import start_http_server

    views = [
        # The GenAI conventions' advised boundaries for these two histograms.
        View(
            instrument_name="gen_ai.client.operation.duration",
            aggregation=ExplicitBucketHistogramAggregation(
                (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
            ),
        ),
        View(
            instrument_name="gen_ai.client.token.usage",
            aggregation=ExplicitBucketHistogramAggregation(
                (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
            ),
        ),
    ]
    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader()],
        resource=Resource.create({"service.name": service}),
        views=views,
    )
    metrics.set_meter_provider(provider)
    start_http_server(port, addr=host)


def _otlp_exporter() -> SpanExporter:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


async def flush() -> None:
    """Export every finished span now, without blocking the event loop (the export runs on other threads,
    which may wait for a database lock that a coroutine on this loop holds)."""
    if _provider is not None:
        await asyncio.to_thread(_provider.force_flush, 5000)


async def shutdown() -> None:
    """Flush and stop the exporters (at process exit)."""
    if _provider is not None:
        await asyncio.to_thread(_provider.shutdown)


def tracer() -> trace.Tracer:
    """Countersign's tracer."""
    return trace.get_tracer("countersign")


def new_span_id() -> str:
    """A fresh span id (hex), reserved now for a span that is recorded later."""
    return format(RandomIdGenerator().generate_span_id(), "016x")


def context_of(trace_id: str, span_id: str) -> Context:
    """A context whose current span is the given (already reserved or remote) span, to parent new spans on."""
    span_context = SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, if one is recording."""
    ctx = trace.get_current_span().get_span_context()
    return (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")) if ctx.is_valid else None


def trace_id_hex() -> str | None:
    """The current span's trace id, if a span is recording."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
