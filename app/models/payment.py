from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base
from app.models.enums import PaymentProvider, PaymentStatus

GATEWAY_ID_LENGTH = 255
REFERENCE_LENGTH = 64
EMAIL_LENGTH = 254
DESCRIPTION_LENGTH = 1000
PAYMENT_METHOD_TYPE_LENGTH = 64


def _enum_values(enum_class: type[PaymentStatus] | type[PaymentProvider]) -> list[str]:
    return [member.value for member in enum_class]


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    payment_id: Mapped[str | None] = mapped_column(String(GATEWAY_ID_LENGTH), unique=True)
    checkout_session_id: Mapped[str | None] = mapped_column(String(GATEWAY_ID_LENGTH), unique=True)
    payment_method_id: Mapped[str | None] = mapped_column(String(GATEWAY_ID_LENGTH))
    payment_method_types: Mapped[list[str]] = mapped_column(
        ARRAY(String(PAYMENT_METHOD_TYPE_LENGTH)), nullable=False, server_default=text("'{}'")
    )
    payment_status: Mapped[PaymentStatus] = mapped_column(
        Enum(PaymentStatus, name="payment_status", values_callable=_enum_values),
        nullable=False,
        server_default=PaymentStatus.PENDING.value,
    )
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    amount_total: Mapped[Decimal] = mapped_column(Numeric(14, 4), nullable=False)
    # Sums of the payment's succeeded and of its pending refunds, kept by the statements that write
    # refunds (under the payment's row lock); the CHECK constraints below hold them to amount_total.
    amount_refunded: Mapped[Decimal] = mapped_column(Numeric(14, 4), nullable=False, server_default=text("0"))
    amount_refund_pending: Mapped[Decimal] = mapped_column(Numeric(14, 4), nullable=False, server_default=text("0"))
    customer_id: Mapped[str | None] = mapped_column(String(REFERENCE_LENGTH))
    customer_email: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH))
    booking_id: Mapped[str | None] = mapped_column(String(REFERENCE_LENGTH))
    property_id: Mapped[str | None] = mapped_column(String(REFERENCE_LENGTH))
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    provider: Mapped[PaymentProvider] = mapped_column(
        Enum(PaymentProvider, name="payment_provider", values_callable=_enum_values), nullable=False
    )
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_LENGTH))
    # `metadata` is reserved on declarative classes, hence the attribute name.
    metadata_: Mapped[dict[str, str]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    # Bumped by every change; exposed as the ETag for optimistic concurrency (If-Match).
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )

    # Server-set columns (id, timestamps, defaults) come back through RETURNING on flush, so an
    # async caller never triggers a lazy refresh.
    __mapper_args__ = {"eager_defaults": True}

    __table_args__ = (
        CheckConstraint("payment_id IS NOT NULL OR checkout_session_id IS NOT NULL", name="has_gateway_reference"),
        CheckConstraint("amount_total > 0", name="amount_positive"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso_code"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refund_pending >= 0 "
            "AND amount_refunded + amount_refund_pending <= amount_total",
            name="refunds_within_total",
        ),
        CheckConstraint("payment_status <> 'refunded' OR amount_refunded = amount_total", name="refunded_in_full"),
        # Serves the owner's list (newest first) and keyset pages on (created_at, id).
        Index("ix_payments_user_id_created_at_id", "user_id", "created_at", "id"),
        # Serves the admin list over every user.
        Index("ix_payments_created_at_id", "created_at", "id"),
        Index("ix_payments_booking_id", "booking_id"),
        Index("ix_payments_property_id", "property_id"),
        Index("ix_payments_payment_status", "payment_status"),
        Index("ix_payments_provider", "provider"),
    )
