"""Decision claims: the first of several concurrent identical decision POSTs is the one that answers 201.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from countersign.db import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decision_claims",
        sa.Column("decision_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("decision_id", name=op.f("pk_decision_claims")),
    )


def downgrade() -> None:
    op.drop_table("decision_claims")
