"""The Temporal client factory: one place sets the data converter, TLS/API key and interceptors."""

from __future__ import annotations

from importlib.metadata import version

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter

from countersign.settings import Settings

# Workers name their build: the SDK's default hashes the source of every loaded module (seconds at start).
BUILD_ID = f"countersign-{version('countersign')}"


async def connect(settings: Settings, address: str | None = None) -> Client:
    """Connect to Temporal (the dev server, a cluster or Temporal Cloud) as the settings say."""
    return await Client.connect(
        address or settings.resolved_temporal_address(),
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key or None,
        tls=settings.temporal_tls or bool(settings.temporal_api_key),
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
    )


def traced(client: Client) -> Client:
    """The same connection with Countersign's converter and tracing (for clients made elsewhere)."""
    return Client(
        client.service_client,
        namespace=client.namespace,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
    )
