"""webhook events, and the event id on status history rows

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 08:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

webhook_outcome = postgresql.ENUM("applied", "stale", "ignored", "unmatched", "anomaly", name="webhook_outcome")


def upgrade() -> None:
    op.add_column("payment_status_history", sa.Column("event_id", sa.String(length=255), nullable=True))
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=True),
        sa.Column("outcome", webhook_outcome, nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("delivery_count", sa.Integer(), server_default="1", nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_webhook_events_payment_id_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("provider", "event_id", name=op.f("uq_webhook_events_provider_event_id")),
    )
    op.create_index("ix_webhook_events_received_at_id", "webhook_events", ["received_at", "id"])
    op.create_index("ix_webhook_events_outcome_received_at", "webhook_events", ["outcome", "received_at"])
    op.create_index("ix_webhook_events_payment_id", "webhook_events", ["payment_id"])


def downgrade() -> None:
    op.drop_table("webhook_events")
    webhook_outcome.drop(op.get_bind())
    op.drop_column("payment_status_history", "event_id")
