"""The Temporal client factory: one place sets the data converter, TLS/API key and interceptors."""

from __future__ import annotations

from importlib.metadata import version

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RetryConfig

from countersign.settings import Settings

# Workers name their build: the SDK's default hashes the source of every loaded module (seconds at start).
BUILD_ID = f"countersign-{version('countersign')}"


# The API answers a person or a system that is waiting: when Temporal is unreachable it says so (503) within a
# couple of seconds instead of retrying for the SDK's default ten, and the caller retries.
API_RETRIES = RetryConfig(max_elapsed_time_millis=2000, max_retries=5)


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
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
        retry_config=retry or RetryConfig(),
        runtime=runtime,
    )


def traced(client: Client) -> Client:
    """The same connection with Countersign's converter and tracing (for clients made elsewhere)."""
    return Client(
        client.service_client,
        namespace=client.namespace,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
    )
