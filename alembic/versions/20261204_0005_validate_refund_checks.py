"""validate the refund CHECK constraints on payments

VALIDATE CONSTRAINT scans the payments table under a SHARE UPDATE EXCLUSIVE lock, which lets reads
and writes go on, in its own transaction after 0004 has committed (and released its exclusive lock).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 17:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINTS = ("ck_payments_refunds_within_total", "ck_payments_refunded_in_full")


def upgrade() -> None:
    for name in CONSTRAINTS:
        op.execute(f"ALTER TABLE payments VALIDATE CONSTRAINT {name}")


def downgrade() -> None:
    """Nothing to undo: 0004's downgrade drops the constraints."""
