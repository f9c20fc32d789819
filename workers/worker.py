"""The worker process: every agent's graph, the workflow and the projection activities on one task queue."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from langchain_core.language_models import BaseChatModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from agents.catalog import AGENTS
from agents.graph import GRAPH_VERSIONS, AgentServices, build_graph, graph_name
from agents.models import fallback_factory, model_factory, warm
from agents.spec import AgentSpec
from approvals import audit
from approvals.checkpoints import BadKey, load_private_key
from approvals.policy import PolicyStore
from countersign import telemetry
from countersign.db import dispose, make_engine, session_factory
from countersign.process import freeze_startup_objects
from countersign.settings import Settings
from tools.business import BusinessStore
from tools.registry import fact_signatures, signatures
from workers import task_cache
from workers.activities import ApprovalActivities, DecisionRecords, LedgerSink, RunActivities
from workers.activities.checkpoint import CheckpointActivities, ensure_checkpoint_schedule
from workers.client import BUILD_ID, connect, metrics_runtime
from workers.webhook_contracts import webhook_task_queue
from workers.webhook_worker import build_webhook_worker, http_client
from workers.workflows.checkpoint import AuditCheckpointWorkflow
from workers.workflows.run import AgentRunWorkflow

log = logging.getLogger("countersign.worker")


def langgraph_plugin(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    store: BusinessStore,
    *,
    task_queue: str,
    model_for: Callable[[AgentSpec], BaseChatModel] | None = None,
    policy: PolicyStore | None = None,
) -> LangGraphPlugin:
    """The LangGraph plugin with every agent's graph, its activity nodes bound to these resources."""
    services = AgentServices(
        task_queue=task_queue,
        store=store,
        policy=policy
        or PolicyStore(settings.policy_path, settings.known_roles(), signatures(), fact_signatures()),
        model_for=model_for or model_factory(settings),
        events=LedgerSink(
            sessions, timedelta(days=settings.policy_call_retention_days), settings.resolved_public_url()
        ),
        records=DecisionRecords(sessions, settings.resolved_public_url()),
        model_label=settings.model,
        agent_models=settings.agent_models,
        fallback_for=fallback_factory(settings) if model_for is None else None,
        prices=settings.prices,
        capture_content=settings.capture_content,
        model_timeout=timedelta(seconds=settings.model_timeout_seconds),
        model_attempts=settings.model_max_attempts,
        tool_timeout=timedelta(seconds=settings.tool_timeout_seconds),
        heartbeat=timedelta(seconds=settings.activity_heartbeat_seconds),
        step_deadline=timedelta(seconds=settings.step_deadline_seconds),
    )
    task_cache.install()
    return LangGraphPlugin(
        graphs={
            graph_name(name, version): build_graph(spec, services, version)
            for name, spec in AGENTS.items()
            for version in GRAPH_VERSIONS
        }
    )


def signing_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The ledger's checkpoint signing key from the settings, if one is set."""
    if settings.audit_signing_key is None:
        return None
    try:
        return load_private_key(settings.audit_signing_key.get_secret_value())
    except BadKey as e:
        raise ValueError(
            f"COUNTERSIGN_AUDIT_SIGNING_KEY: {e} (make one with `countersign audit keygen`)"
        ) from e


def build_worker(
    client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    store: BusinessStore,
    *,
    task_queue: str | None = None,
    model_for: Callable[[AgentSpec], BaseChatModel] | None = None,
    policy: PolicyStore | None = None,
) -> Worker:
    """A worker for every agent in the catalog, bound to these database sessions and this business store."""
    queue = task_queue or settings.task_queue
    plugin = langgraph_plugin(settings, sessions, store, task_queue=queue, model_for=model_for, policy=policy)
    console = settings.resolved_public_url()
    runs, approvals = RunActivities(sessions, console), ApprovalActivities(sessions, console)
    runner = SandboxedWorkflowRunner() if settings.workflow_sandbox else UnsandboxedWorkflowRunner()
    checkpoints = CheckpointActivities(sessions, signing_key(settings), settings.resolved_checkpoint_file())
    return Worker(
        client,
        task_queue=queue,
        workflows=[AgentRunWorkflow, AuditCheckpointWorkflow],
        activities=[runs.set_status, approvals.open, approvals.record, checkpoints.checkpoint],
        plugins=[plugin],
        # After a worker dies its sticky queue would hold the next task for 10 s; fall back to the shared
        # queue quickly instead.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
        max_cached_workflows=settings.worker_max_cached_workflows,
        build_id=BUILD_ID,
        workflow_runner=runner,
    )


async def serve(settings: Settings, *, webhooks: bool = True) -> None:
    """Run a worker (and by default the webhook worker, on the same engine) until SIGINT/SIGTERM."""
    telemetry.configure("countersign-worker", settings.resolved_database_url(), settings.trace_retention_days)
    engine = make_engine(settings.resolved_database_url())
    store = BusinessStore.from_url(settings.resolved_business_database_url(), sandbox=settings.demo_sandbox)
    runtime = None
    if settings.worker_metrics_port:
        # Our metrics on the port, the Temporal SDK's on the next one. A port in use costs the metrics, not
        # the worker: it logs why and works on.
        port = settings.worker_metrics_port
        try:
            telemetry.serve_metrics("countersign-worker", settings.api_host, port)
            runtime = metrics_runtime(settings.api_host, port + 1)
        except (OSError, RuntimeError) as e:
            log.warning("worker metrics not served on ports %d/%d: %s", port, port + 1, e)
    # Provider SDKs are heavy to import: on a thread at start, not on the loop at the first model call.
    await asyncio.to_thread(warm, settings, list(AGENTS.values()))
    client = await connect(settings, runtime=runtime)
    sessions = session_factory(engine)
    policy = PolicyStore(settings.policy_path, settings.known_roles(), signatures(), fact_signatures())
    worker = build_worker(client, settings, sessions, store, policy=policy)
    # Before polling: the collection stops the loop for ~0.1 s, which no task should wait through.
    freeze_startup_objects()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as running:
        # The run worker first: a crashed worker's paused runs wait for it. What is not needed to poll (the
        # webhook worker, the policy's ledger event, the checkpoint schedule's RPCs) comes after.
        await running.enter_async_context(worker)
        log.info(
            "worker polling task queue %s at %s", settings.task_queue, settings.resolved_temporal_address()
        )
        if webhooks:
            http = await running.enter_async_context(http_client(settings))
            await running.enter_async_context(build_webhook_worker(client, settings, sessions, http))
            log.info("webhook worker polling task queue %s", webhook_task_queue(settings.task_queue))
        current = policy.current
        await audit.record(
            sessions,
            audit.NewEvent(
                id=f"policy:{current.version}:loaded",
                type="policy.loaded",
                actor="system:worker",
                data={
                    "version": current.version,
                    "path": str(settings.policy_path),
                    "rules": len(current.rules),
                },
            ),
        )
        if settings.audit_signing_key is not None and settings.audit_checkpoint_seconds > 0:
            every = timedelta(seconds=settings.audit_checkpoint_seconds)
            sid = await ensure_checkpoint_schedule(client, settings.task_queue, every)
            log.info("audit checkpoints every %s (schedule %s)", every, sid)
        await stop.wait()
    await telemetry.shutdown()
    await dispose(engine)
    await dispose(store.engine)
