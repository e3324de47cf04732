"""refunds, and the refunded / pending sums on payments

The payments table is not rewritten: the two new columns have a constant default (PostgreSQL 11+
adds those without touching the rows), so the exclusive lock this revision takes is short. The
CHECK constraints are added NOT VALID here and validated by revision 0005, in a transaction of its
own, under a lock that lets reads and writes go on (env.py commits each revision on its own). Every
payment that is already `refunded` gets one succeeded refund of its whole amount, so the payment
and its refunds agree for old data too.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

refund_status = postgresql.ENUM("pending", "succeeded", "failed", "canceled", name="refund_status")
refund_reason = postgresql.ENUM(
    "requested_by_customer", "booking_canceled", "duplicate", "fraudulent", "other", name="refund_reason"
)
payment_provider = postgresql.ENUM(name="payment_provider", create_type=False)

CHECKS = {
    "ck_payments_refunds_within_total": "amount_refunded >= 0 AND amount_refund_pending >= 0 "
    "AND amount_refunded + amount_refund_pending <= amount_total",
    "ck_payments_refunded_in_full": "payment_status <> 'refunded' OR amount_refunded = amount_total",
}

BACKFILL = """
WITH refunded AS (
    UPDATE payments SET amount_refunded = amount_total
    WHERE payment_status = 'refunded'
    RETURNING id, provider, amount_total, currency, updated_at
)
INSERT INTO refunds (payment_id, provider, amount, currency, status, actor, created_at, updated_at)
SELECT id, provider, amount_total, currency, 'succeeded', 'system:migration', updated_at, updated_at
FROM refunded ORDER BY id
"""


def upgrade() -> None:
    op.add_column(
        "payments", sa.Column("amount_refunded", sa.Numeric(14, 4), server_default=sa.text("0"), nullable=False)
    )
    op.add_column(
        "payments", sa.Column("amount_refund_pending", sa.Numeric(14, 4), server_default=sa.text("0"), nullable=False)
    )
    op.create_table(
        "refunds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", payment_provider, nullable=False),
        sa.Column("refund_id", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.Numeric(14, 4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", refund_status, server_default="pending", nullable=False),
        sa.Column("reason", refund_reason, nullable=True),
        sa.Column("metadata", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refunds_amount_positive")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_refunds_payment_id_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("provider", "refund_id", name=op.f("uq_refunds_provider_refund_id")),
    )
    op.create_index("ix_refunds_payment_id_created_at_id", "refunds", ["payment_id", "created_at", "id"])
    op.execute(BACKFILL)
    for name, condition in CHECKS.items():  # enforced on new rows from now on; 0005 checks the old ones
        op.execute(f"ALTER TABLE payments ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")


def downgrade() -> None:
    for name in CHECKS:
        op.drop_constraint(op.f(name), "payments", type_="check")
    op.drop_table("refunds")
    refund_reason.drop(op.get_bind())
    refund_status.drop(op.get_bind())
    op.drop_column("payments", "amount_refund_pending")
    op.drop_column("payments", "amount_refunded")
