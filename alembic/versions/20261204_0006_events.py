"""events: the transactional outbox

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 18:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "event_id", postgresql.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False
        ),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=False),
        sa.Column("refund_id", sa.BigInteger(), nullable=True),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("previous_status", sa.String(length=16), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
        sa.UniqueConstraint("position", name=op.f("uq_events_position")),
    )
    op.create_index("ix_events_unpositioned", "events", ["id"], postgresql_where=sa.text("position IS NULL"))
    op.create_index(
        "ix_events_unpublished",
        "events",
        ["position"],
        postgresql_where=sa.text("position IS NOT NULL AND published_at IS NULL"),
    )
    op.create_index("ix_events_payment_id_position", "events", ["payment_id", "position"])
    op.create_index("ix_events_created_at", "events", ["created_at"])


def downgrade() -> None:
    op.drop_table("events")
