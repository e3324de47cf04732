"""create payments

Revision ID: 0001
Revises:
Create Date: 2026-11-27 07:24:06+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

payment_status = postgresql.ENUM(
    "pending", "processing", "succeeded", "failed", "canceled", "refunded", name="payment_status"
)
payment_provider = postgresql.ENUM("stripe", "paypal", "square", "razorpay", "other", name="payment_provider")


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("payment_id", sa.String(length=255), nullable=True),
        sa.Column("checkout_session_id", sa.String(length=255), nullable=True),
        sa.Column("payment_method_id", sa.String(length=255), nullable=True),
        sa.Column(
            "payment_method_types",
            postgresql.ARRAY(sa.String(length=64)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("payment_status", payment_status, server_default="pending", nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_total", sa.Numeric(precision=14, scale=4), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("customer_email", sa.String(length=254), nullable=True),
        sa.Column("booking_id", sa.String(length=64), nullable=True),
        sa.Column("property_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", payment_provider, nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_payments_currency_iso_code")),
        sa.CheckConstraint("amount_total > 0", name=op.f("ck_payments_amount_positive")),
        sa.CheckConstraint(
            "payment_id IS NOT NULL OR checkout_session_id IS NOT NULL",
            name=op.f("ck_payments_has_gateway_reference"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("checkout_session_id", name=op.f("uq_payments_checkout_session_id")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_payments_payment_id")),
    )
    op.create_index("ix_payments_user_id_created_at_id", "payments", ["user_id", "created_at", "id"])
    op.create_index("ix_payments_created_at_id", "payments", ["created_at", "id"])
    op.create_index("ix_payments_booking_id", "payments", ["booking_id"])
    op.create_index("ix_payments_property_id", "payments", ["property_id"])
    op.create_index("ix_payments_payment_status", "payments", ["payment_status"])
    op.create_index("ix_payments_provider", "payments", ["provider"])


def downgrade() -> None:
    op.drop_table("payments")  # drops its indexes and constraints with it
    payment_provider.drop(op.get_bind())
    payment_status.drop(op.get_bind())
