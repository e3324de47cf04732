"""integrity: payment version and metadata, status history, idempotency keys

Existing payments keep every value; they get version 1, empty metadata, and one history row
(null -> their current status, actor "system:migration", at their created_at).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 07:30:10+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

payment_status = postgresql.ENUM(name="payment_status", create_type=False)
idempotency_state = postgresql.ENUM("in_flight", "completed", name="idempotency_state")

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION payment_status_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payment_status_history is append-only';
END;
$$
"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER payment_status_history_append_only
BEFORE UPDATE OR DELETE ON payment_status_history
FOR EACH STATEMENT EXECUTE FUNCTION payment_status_history_append_only()
"""


def upgrade() -> None:
    # Constant defaults: PostgreSQL adds these columns without rewriting the table.
    op.add_column(
        "payments",
        sa.Column("metadata", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    op.add_column("payments", sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False))

    op.create_table(
        "payment_status_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=False),
        sa.Column("from_status", payment_status, nullable=True),
        sa.Column("to_status", payment_status, nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_status_history_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_status_history")),
    )
    op.create_index("ix_payment_status_history_payment_id_id", "payment_status_history", ["payment_id", "id"])
    op.execute(
        "INSERT INTO payment_status_history (payment_id, from_status, to_status, actor, created_at) "
        "SELECT id, NULL, payment_status, 'system:migration', created_at FROM payments ORDER BY id"
    )
    op.execute(APPEND_ONLY_FUNCTION)
    op.execute(APPEND_ONLY_TRIGGER)

    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", idempotency_state, nullable=False),
        sa.Column("response_status", sa.SmallInteger(), nullable=True),
        sa.Column("response_headers", postgresql.JSONB(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("locked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    idempotency_state.drop(op.get_bind())
    op.drop_table("payment_status_history")
    op.execute("DROP FUNCTION payment_status_history_append_only()")
    op.drop_column("payments", "version")
    op.drop_column("payments", "metadata")
