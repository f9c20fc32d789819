"""ORM records of approval requests and the decisions people took on them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from countersign.db import Base, utcnow

PENDING = "pending"
TERMINAL = ("approved", "rejected", "expired", "responded", "cancelled")


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
