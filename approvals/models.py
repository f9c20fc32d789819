"""The approvals package's ORM records: approval requests and decisions, the audit ledger and its signed
checkpoints, webhook endpoints and their deliveries. Their queries live in ``approvals.repositories``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from countersign import models as _kernel_models  # noqa: F401  (defines "tenants" and "runs", which the FKs name)
from countersign.db import Base, utcnow

PENDING = "pending"
TERMINAL = ("approved", "rejected", "expired", "responded", "cancelled")
BIGINT = BigInteger().with_variant(Integer(), "sqlite")
MAX_URL_LENGTH = 2000


class ApprovalRequest(Base):
    """A gated tool call waiting for (or past) a decision."""

    __tablename__ = "approval_requests"
    __table_args__ = (Index("ix_approval_requests_tenant_status", "tenant_id", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    agent: Mapped[str] = mapped_column(String(100))
    tool: Mapped[str] = mapped_column(String(100))
    tool_call_id: Mapped[str] = mapped_column(String(100))
    arguments: Mapped[dict[str, Any]]
    arguments_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(String(200))
    policy_version: Mapped[str] = mapped_column(String(80))
    required_roles: Mapped[list[str]]
    quorum: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(20), default=PENDING)
    requested_by: Mapped[str] = mapped_column(String(200))
    escalated: Mapped[bool] = mapped_column(default=False)
    reminded: Mapped[bool] = mapped_column(default=False)
    outcome: Mapped[dict[str, Any] | None]
    # Why the policy gated the call and the agent's tool results so far: what the deciders are shown.
    evidence: Mapped[dict[str, Any] | None]
    expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[dt.datetime | None]


class ApprovalDecision(Base):
    """One person's decision; its id is the Temporal Update id that delivered it."""

    __tablename__ = "approval_decisions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("approval_requests.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    principal_id: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))
    arguments: Mapped[dict[str, Any] | None]
    arguments_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    result_status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DecisionClaim(Base):
    """Which delivery of a decision came first: concurrent identical POSTs all reach the one Temporal Update,
    and only the one that claimed its id answers 201 (the others 200, with the same outcome)."""

    __tablename__ = "decision_claims"

    decision_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(36))
    claimed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- the audit ledger -----------------------------------------------------------------------------------


class AuditEvent(Base):
    """One ledger event. Never updated or deleted (PostgreSQL triggers refuse it)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=False)
    id: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64), index=True)
    run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    trace_id: Mapped[str | None] = mapped_column(String(32))
    occurred_at: Mapped[dt.datetime] = mapped_column(index=True)
    data: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's head: last sequence number and hash. Its row lock orders concurrent appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BIGINT)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement that the ledger held ``seq`` events ending in ``hash``. Append-only."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[dt.datetime]
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(Text)


# --- webhooks -------------------------------------------------------------------------------------------


class WebhookEndpoint(Base):
    """Where a tenant wants events sent. The secret is kept (not hashed): signing needs it."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    url: Mapped[str] = mapped_column(String(MAX_URL_LENGTH))
    secret: Mapped[str] = mapped_column(String(100))
    events: Mapped[list[str]]
    description: Mapped[str | None] = mapped_column(String(200))
    # "standard": the signed event JSON; "slack": a chat message for a Slack-compatible incoming webhook.
    format: Mapped[str] = mapped_column(String(16), default="standard", server_default="standard")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[dt.datetime | None]


class WebhookDelivery(Base):
    """One event for one endpoint: the exact body, its message id, and where delivery stands."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "message_id", name="uq_webhook_deliveries_endpoint_message"),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    message_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery (the Temporal activity attempt number)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (
        UniqueConstraint("delivery_id", "attempt", name="uq_webhook_attempts_delivery_attempt"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempt: Mapped[int]
    started_at: Mapped[dt.datetime]
    duration_ms: Mapped[int]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(500))


class PolicyCall(Base):
    """A tool call as the policy judged it: what it saw (arguments, run context, provenance, facts) and its
    verdict. Kept outside the ledger (it holds arguments, which may be personal) so ``countersign policy
    diff`` can judge recorded calls again under another policy."""

    __tablename__ = "policy_calls"
    __table_args__ = (Index("ix_policy_calls_created", "created_at"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # run id : tool call id
    # No foreign keys, like the ledger: the row is written in the ledger's transaction, and a key check
    # would take a lock on the run that status writes hold while they wait for the ledger's head.
    tenant_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    agent: Mapped[str] = mapped_column(String(100))
    caller: Mapped[str] = mapped_column(String(200))
    tool: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10))
    arguments: Mapped[dict[str, Any]]
    # run (input, earlier calls), provenance and the facts the verdict relied on
    context: Mapped[dict[str, Any]]
    outcome: Mapped[str] = mapped_column(String(20))
    rule: Mapped[str] = mapped_column(String(200))
    policy_version: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
