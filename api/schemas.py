"""Wire shapes of the API."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workers.contracts import Budget

T = TypeVar("T")


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class RunCreate(BaseModel):
    """Start a run of ``agent`` on ``input`` (validated against the agent's input schema).

    ``budget`` caps the run's model calls, tokens and cost (defaults from the settings); when a cap is reached
    the run stops with status ``failed`` and reason ``budget_exceeded``.
    """

    model_config = ConfigDict(extra="forbid")
    agent: str = Field(min_length=1, max_length=100)
    input: dict[str, Any] = Field(default_factory=dict)
    budget: Budget | None = None


class UsageRead(BaseModel):
    input_tokens: int
    output_tokens: int
    model_calls: int
    cost_usd: float


class RunRead(BaseModel):
    id: str
    agent: str
    status: Literal["running", "awaiting_approval", "completed", "failed", "cancelled"]
    input: dict[str, Any]
    output: dict[str, Any] | None
    error: dict[str, Any] | None
    usage: UsageRead
    trace_id: str | None
    requested_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


class Page(BaseModel, Generic[T]):
    """A page of results; pass ``next_cursor`` as ``cursor`` for the next page (null at the end)."""

    items: list[T]
    next_cursor: str | None


class DecisionRead(BaseModel):
    id: str
    principal_id: str
    action: str
    arguments: dict[str, Any] | None
    reason: str | None
    message: str | None
    result_status: str
    created_at: dt.datetime


class ApprovalRead(BaseModel):
    id: str
    run_id: str
    agent: str
    tool: str
    tool_call_id: str
    arguments: dict[str, Any]
    arguments_hash: str
    reason: str | None
    rule: str
    policy_version: str
    required_roles: list[str]
    quorum: int
    status: Literal["pending", "approved", "rejected", "expired", "responded", "cancelled"]
    escalated: bool
    decisions: list[DecisionRead]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    decided_at: dt.datetime | None


class DecisionCreate(BaseModel):
    """A decision on a pending request. ``arguments_hash`` is the hash of the arguments you were shown."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["approve", "edit", "reject", "respond"]
    arguments_hash: str = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] | None = None
    reason: str | None = Field(default=None, max_length=2000)
    message: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _fields_for_action(self) -> DecisionCreate:
        if self.action == "edit" and self.arguments is None:
            raise ValueError("arguments: required when action is edit")
        if self.action != "edit" and self.arguments is not None:
            raise ValueError("arguments: only allowed when action is edit")
        if self.action == "reject" and not (self.reason and self.reason.strip()):
            raise ValueError("reason: required when action is reject")
        if self.action == "respond" and not (self.message and self.message.strip()):
            raise ValueError("message: required when action is respond")
        return self


class DecisionResult(BaseModel):
    decision_id: str
    request_id: str
    action: str
    request_status: str
    approvals: int
    quorum: int


class AgentTool(BaseModel):
    name: str
    scope: str
    kind: str
    description: str


class AgentOwner(BaseModel):
    """Who answers for an agent: a team, the role that decides its escalations, an optional alert webhook."""

    team: str
    role: str
    webhook: str | None = None


class AgentRead(BaseModel):
    name: str
    description: str
    owner: AgentOwner
    input_schema: dict[str, Any]
    example_input: dict[str, Any]
    scopes: list[str]
    tools: list[AgentTool]


class RunEvent(BaseModel):
    """One event of a run's stream (the ``data`` of a Server-Sent Event whose ``id`` is ``seq``)."""

    seq: int
    type: str
    actor: str
    occurred_at: dt.datetime
    data: dict[str, Any]


WebhookEventName = Literal[
    "run.completed", "run.failed", "approval.requested", "approval.decided", "approval.expired", "agent.alert"
]


class WebhookCreate(BaseModel):
    """Register an endpoint: an http(s) URL and the event types to send (all when omitted)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000)
    events: list[WebhookEventName] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=200)
    format: Literal["standard", "slack"] = Field(
        default="standard",
        description="standard: the signed event JSON; slack: a chat message for a Slack-compatible "
        "incoming webhook (who must decide what, time left, a link to the console)",
    )


class WebhookRead(BaseModel):
    id: str
    url: str
    events: list[WebhookEventName]
    description: str | None
    format: Literal["standard", "slack"] = "standard"
    created_at: dt.datetime


class WebhookCreated(WebhookRead):
    """The new endpoint with its signing secret (``whsec_...``), shown this once."""

    secret: str


class WebhookAttemptRead(BaseModel):
    attempt: int
    started_at: dt.datetime
    duration_ms: int
    status_code: int | None
    error: str | None


class WebhookDeliveryRead(BaseModel):
    id: str
    message_id: str
    event_type: WebhookEventName
    run_id: str | None
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: list[WebhookAttemptRead]
    created_at: dt.datetime
    delivered_at: dt.datetime | None


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """``checks`` names each dependency with ``ok`` or the kind of error."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
