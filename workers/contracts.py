"""Wire shapes between the API, the workflow and its activities (pydantic, so fields can be added safely)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from workers.webhook_contracts import WebhookEvent

TASK_QUEUE = "countersign"

RunStatus = Literal["running", "awaiting_approval", "completed", "failed", "cancelled"]
DecisionAction = Literal["approve", "edit", "reject", "respond"]
RequestStatus = Literal["pending", "approved", "rejected", "expired", "responded", "cancelled"]


class Budget(BaseModel):
    """Per-run limits; reaching one stops the run: status ``failed``, reason ``budget_exceeded``."""

    max_model_calls: int = Field(default=25, ge=1, le=1000)
    max_tokens: int = Field(default=200_000, ge=1)
    max_cost_usd: float = Field(default=5.0, ge=0)


class RunInput(BaseModel):
    """Everything a run needs, fixed at start."""

    run_id: str
    tenant_id: str
    agent: str
    input: dict[str, Any]
    requested_by: str
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    budget: Budget = Field(default_factory=lambda: Budget())


class Usage(BaseModel):
    """Model usage of a run so far."""

    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0
    cost_usd: float = 0.0


class RunResult(BaseModel):
    """The workflow's result; the same values land in the run row."""

    status: RunStatus
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    usage: Usage = Field(default_factory=Usage)


class StatusUpdate(BaseModel):
    """A change to the run row, written by the ``runs.set_status`` activity."""

    run: RunInput
    status: RunStatus
    event: str | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    usage: Usage | None = None
    # Webhook events recorded in the same transaction as the change (an outbox): delivered once committed.
    webhooks: list[WebhookEvent] = Field(default_factory=list)
    # Names the change's ledger event when more than one step may write it (else: the writing activity).
    key: str | None = None


class GatedRequest(BaseModel):
    """An approval request as the workflow holds it."""

    id: str
    run_id: str
    tenant_id: str
    agent: str
    tool: str
    tool_call_id: str
    arguments: dict[str, Any]
    arguments_hash: str
    reason: str = ""
    rule: str
    policy_version: str
    roles: list[str]
    quorum: int = 1
    escalate_to: list[str] = Field(default_factory=list)
    requested_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None = None
    remind_at: dt.datetime | None = None
    escalate_at: dt.datetime | None = None
    status: RequestStatus = "pending"
    approvals: list[str] = Field(default_factory=list)
    # Ids of the decisions that changed the request, in order (their ledger events are
    # ``<request id>:approval.decided:<decision id>``): what an executed effect points back to.
    decisions: list[str] = Field(default_factory=list)
    reminded: bool = False
    escalated: bool = False
    message: str | None = None


class DecisionIn(BaseModel):
    """A person's decision as delivered by the ``decide`` Update (its id is the decision id)."""

    decision_id: str
    request_id: str
    principal_id: str
    principal_roles: list[str]
    action: DecisionAction
    arguments_hash: str
    arguments: dict[str, Any] | None = None
    reason: str | None = None
    message: str | None = None


class DecisionOutcome(BaseModel):
    """What a decision did: the request's status after it, and approvals counted so far."""

    decision_id: str
    request_id: str
    action: DecisionAction
    request_status: RequestStatus
    approvals: int
    quorum: int
    # The decision's record (a RequestChange) for the API to write before it answers; runs from
    # RECORD_IN_ACT on, whose workflow does not wait for the write.
    record: dict[str, Any] | None = None


class RequestChange(BaseModel):
    """A change to an approval request row (and the ledger event that records it)."""

    request: GatedRequest
    event: str
    actor: str
    decision: DecisionIn | None = None
    outcome: DecisionOutcome | None = None
    webhooks: list[WebhookEvent] = Field(default_factory=list)
    # The change settles the last pending request: the run resumes, recorded in the same transaction.
    resume: StatusUpdate | None = None


class OpenRequests(BaseModel):
    """The approval requests of one model turn, opened together."""

    run: RunInput
    requests: list[GatedRequest]
    webhooks: list[WebhookEvent] = Field(default_factory=list)
    usage: Usage | None = None  # the run's model usage so far, shown while it waits
    # Per request id: why the policy gated the call and what the agent had read (shown to the deciders).
    evidence: dict[str, dict[str, Any]] = Field(default_factory=dict)
