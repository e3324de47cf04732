from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Enum, ForeignKey, Identity, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base
from app.models.enums import PaymentStatus

ACTOR_LENGTH = 64
REQUEST_ID_LENGTH = 128

# The same PostgreSQL enum type as payments.payment_status; created by the payments migration.
_status_type = Enum(
    PaymentStatus,
    name="payment_status",
    values_callable=lambda enum: [member.value for member in enum],
    create_type=False,
)


class PaymentStatusHistory(Base):
    """One row per status a payment entered (creation included). Append-only: a trigger in the
    database refuses UPDATE and DELETE."""

    __tablename__ = "payment_status_history"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    payment_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("payments.id"), nullable=False)
    from_status: Mapped[PaymentStatus | None] = mapped_column(_status_type)
    to_status: Mapped[PaymentStatus] = mapped_column(_status_type, nullable=False)
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH), nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_LENGTH))
    # The provider's event id when a webhook made the change.
    event_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    __mapper_args__ = {"eager_defaults": True}
    __table_args__ = (Index("ix_payment_status_history_payment_id_id", "payment_id", "id"),)
