"""Signing the ledger's head (see ``approvals.checkpoints``), and the schedule that does it periodically."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.exceptions import ApplicationError

from approvals.checkpoints import write_checkpoint
from workers.workflows.checkpoint import CHECKPOINT_ACTIVITY, AuditCheckpointWorkflow

log = logging.getLogger("countersign.audit")


class CheckpointActivities:
    """The checkpoint activity, bound to the database and this worker's signing key (if it has one)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], key: Ed25519PrivateKey | None, file: Path
    ) -> None:
        self.sessions, self.key, self.file = sessions, key, file

    @activity.defn(name=CHECKPOINT_ACTIVITY)
    async def checkpoint(self) -> int:
        """Sign and store the current head; returns its seq, or 0 when it was already checkpointed."""
        if self.key is None:
            raise ApplicationError("this worker has no COUNTERSIGN_AUDIT_SIGNING_KEY", type="NoSigningKey")
        async with self.sessions() as session, session.begin():
            written = await write_checkpoint(session, self.key, self.file)
        if written is None:
            return 0
        log.info("audit checkpoint signed at seq %s (key %s)", written["seq"], written["key_id"])
        return int(written["seq"])


def schedule_id(task_queue: str) -> str:
    """The checkpoint schedule of the workers on this task queue."""
    return f"countersign-audit-checkpoint-{task_queue}"


async def ensure_checkpoint_schedule(client: Client, task_queue: str, every: timedelta) -> str:
    """Create (or bring up to date) the schedule that signs a checkpoint every ``every``; returns its id."""
    sid = schedule_id(task_queue)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(AuditCheckpointWorkflow.run, id=sid, task_queue=task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(sid, schedule)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(sid).update(replace)
    return sid
