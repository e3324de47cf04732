from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base
from app.models.enums import PaymentProvider, RefundReason, RefundStatus
from app.models.history import ACTOR_LENGTH, REQUEST_ID_LENGTH
from app.models.payment import GATEWAY_ID_LENGTH

FAILURE_REASON_LENGTH = 500


def _values(enum_class: type[StrEnum]) -> list[str]:
    return [member.value for member in enum_class]


class Refund(Base):
    """Money going back for a payment. Written only while the payment's row is locked, together with
    the payment's amount_refunded / amount_refund_pending, whose CHECK constraint keeps the sum of
    succeeded and pending refunds within the amount paid."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    payment_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("payments.id"), nullable=False)
    # The payment's provider: a gateway's refund id is unique per provider.
    provider: Mapped[PaymentProvider] = mapped_column(
        Enum(PaymentProvider, name="payment_provider", values_callable=_values, create_type=False), nullable=False
    )
    refund_id: Mapped[str | None] = mapped_column(String(GATEWAY_ID_LENGTH))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 4), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[RefundStatus] = mapped_column(
        Enum(RefundStatus, name="refund_status", values_callable=_values),
        nullable=False,
        server_default=RefundStatus.PENDING.value,
    )
    reason: Mapped[RefundReason | None] = mapped_column(
        Enum(RefundReason, name="refund_reason", values_callable=_values)
    )
    metadata_: Mapped[dict[str, str]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    failure_reason: Mapped[str | None] = mapped_column(String(FAILURE_REASON_LENGTH))
    # Who recorded it (user:<id>, service:<id>, admin:<id>, stripe, migration) and in which request.
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH), nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_LENGTH))
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        UniqueConstraint("provider", "refund_id"),
        Index("ix_refunds_payment_id_created_at_id", "payment_id", "created_at", "id"),
    )
