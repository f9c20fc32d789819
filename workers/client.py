"""The Temporal client factory: one place sets the data converter, TLS/API key and interceptors."""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import version
from typing import Any

from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RetryConfig

from countersign.settings import Settings

# Workers name their build: the SDK's default hashes the source of every loaded module (seconds at start).
BUILD_ID = f"countersign-{version('countersign')}"


# The API answers a person or a system that is waiting: when Temporal is unreachable it says so (503) within a
# couple of seconds instead of retrying for the SDK's default ten, and the caller retries.
API_RETRIES = RetryConfig(max_elapsed_time_millis=2000, max_retries=5)


@lru_cache(maxsize=1024)
def _adapter(hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(hint)


class _JSONConverter(PydanticJSONPlainPayloadConverter):
    """The pydantic JSON converter with one TypeAdapter per type for the whole process.

    The worker makes a payload converter per workflow it runs, and the SDK's converter keeps its adapters per
    instance, so every run built its adapters again: about 1 ms per dataclass type (the LangGraph plugin's
    activity input and output) on each new run and after each cache eviction.
    """

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        """The value of ``payload`` as ``type_hint`` (validated by pydantic)."""
        hint: Any = type_hint if type_hint is not None else Any
        try:
            hash(hint)
        except TypeError:  # an unhashable hint: no caching
            return TypeAdapter(hint).validate_json(payload.data)
        return _adapter(hint).validate_json(payload.data)


class PayloadConverter(CompositePayloadConverter):
    """Temporal's default converters, with pydantic's JSON converter (sharing its adapters) for JSON."""

    def __init__(self) -> None:
        json = _JSONConverter()
        super().__init__(
            *(
                json if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


data_converter = DataConverter(payload_converter_class=PayloadConverter)


def metrics_runtime(host: str, port: int) -> Runtime:
    """A Temporal runtime whose SDK metrics (pollers, task latencies, activity outcomes) are served for
    Prometheus on ``host:port``, with ``_total`` counters and durations in seconds."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"{host}:{port}", counters_total_suffix=True, durations_as_seconds=True
            )
        )
    )


async def connect(
    settings: Settings,
    address: str | None = None,
    retry: RetryConfig | None = None,
    runtime: Runtime | None = None,
) -> Client:
    """Connect to Temporal (the dev server, a cluster or Temporal Cloud) as the settings say."""
    return await Client.connect(
        address or settings.resolved_temporal_address(),
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key or None,
        tls=settings.temporal_tls or bool(settings.temporal_api_key),
        data_converter=data_converter,
        interceptors=[TracingInterceptor()],
        retry_config=retry or RetryConfig(),
        runtime=runtime,
    )


def traced(client: Client) -> Client:
    """The same connection with Countersign's converter and tracing (for clients made elsewhere)."""
    return Client(
        client.service_client,
        namespace=client.namespace,
        data_converter=data_converter,
        interceptors=[TracingInterceptor()],
    )
