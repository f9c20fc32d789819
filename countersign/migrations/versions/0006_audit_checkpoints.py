"""Signed audit checkpoints; the ledger's head is guarded like its events, on PostgreSQL and SQLite.

The head may only move forward, onto an event that exists with that hash; it cannot be deleted; checkpoints
cannot be changed or deleted (and on PostgreSQL, as before, neither can events). On SQLite the guards are
triggers in the same file, which whoever can write the file can drop: there, the chain detects a changed event
and signed checkpoints (kept outside the database too) detect truncation.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from countersign.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# On SQLite the events themselves stay unguarded, as before: whoever can open the file can change them, and
# the hash chain is what reports it (at the first altered event). The head and the checkpoints are guarded.
SQLITE_GUARDS = {
    "audit_checkpoints_no_update": "BEFORE UPDATE ON audit_checkpoints BEGIN "
    "SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END",
    "audit_checkpoints_no_delete": "BEFORE DELETE ON audit_checkpoints BEGIN "
    "SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END",
    "audit_head_no_delete": "BEFORE DELETE ON audit_head BEGIN "
    "SELECT RAISE(ABORT, 'audit_head only moves forward'); END",
    "audit_head_forward_only": "BEFORE UPDATE ON audit_head WHEN NEW.seq < OLD.seq "
    "OR (NEW.seq = OLD.seq AND NEW.hash != OLD.hash) "
    "OR (NEW.seq > OLD.seq AND NOT EXISTS "
    "(SELECT 1 FROM audit_events WHERE seq = NEW.seq AND hash = NEW.hash)) BEGIN "
    "SELECT RAISE(ABORT, 'audit_head only moves forward'); END",
}

PG_HEAD_GUARD = """
CREATE FUNCTION countersign_audit_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' OR NEW.seq < OLD.seq OR (NEW.seq = OLD.seq AND NEW.hash <> OLD.hash)
     OR (NEW.seq > OLD.seq AND NOT EXISTS
         (SELECT 1 FROM audit_events WHERE seq = NEW.seq AND hash = NEW.hash)) THEN
    RAISE EXCEPTION 'audit_head only moves forward';
  END IF;
  RETURN NEW;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_checkpoints")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION countersign_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints "
            "FOR EACH ROW EXECUTE FUNCTION countersign_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints "
            "FOR EACH STATEMENT EXECUTE FUNCTION countersign_append_only()"
        )
        op.execute(PG_HEAD_GUARD)
        op.execute(
            "CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_head "
            "FOR EACH ROW EXECUTE FUNCTION countersign_audit_head_forward_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head "
            "FOR EACH STATEMENT EXECUTE FUNCTION countersign_append_only()"
        )
    else:
        for name, body in SQLITE_GUARDS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_head_no_truncate ON audit_head")
        op.execute("DROP TRIGGER IF EXISTS audit_head_forward_only ON audit_head")
        op.execute("DROP FUNCTION IF EXISTS countersign_audit_head_forward_only()")
        op.execute("DROP TRIGGER IF EXISTS audit_checkpoints_no_truncate ON audit_checkpoints")
        op.execute("DROP TRIGGER IF EXISTS audit_checkpoints_no_change ON audit_checkpoints")
        op.execute("DROP FUNCTION IF EXISTS countersign_append_only()")
    else:
        for name in SQLITE_GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("audit_checkpoints")
