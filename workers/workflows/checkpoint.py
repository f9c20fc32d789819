"""The ledger checkpoint: a Temporal Schedule starts this workflow every few minutes to sign the head."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

CHECKPOINT_ACTIVITY = "audit.checkpoint"


@workflow.defn(name="AuditCheckpoint")
class AuditCheckpointWorkflow:
    """Sign the ledger's current head once; the schedule skips a tick while one is still running."""

    @workflow.run
    async def run(self) -> int:
        """The sequence number the new checkpoint covers (0 when the head was already checkpointed)."""
        seq: int = await workflow.execute_activity(
            CHECKPOINT_ACTIVITY,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=5, non_retryable_error_types=["NoSigningKey"]),
            result_type=int,
        )
        return seq
