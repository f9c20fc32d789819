"""Embedded span store, so a run's trace is readable with no tracing backend.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from countersign.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spans",
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("parent_span_id", sa.String(length=16), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("end_time", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("trace_id", "span_id", name=op.f("pk_spans")),
    )
    op.create_index(op.f("ix_spans_run_id"), "spans", ["run_id"], unique=False)
    op.create_index(op.f("ix_spans_start_time"), "spans", ["start_time"], unique=False)
    # The run's own span (invoke_agent), so decisions and the final span can join the run's trace.
    op.add_column("runs", sa.Column("span_id", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("span_id")
    op.drop_index(op.f("ix_spans_start_time"), table_name="spans")
    op.drop_index(op.f("ix_spans_run_id"), table_name="spans")
    op.drop_table("spans")
