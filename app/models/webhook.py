from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, DateTime, Enum, ForeignKey, Identity, Index, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

EVENT_ID_LENGTH = 255


class WebhookOutcome(StrEnum):
    APPLIED = "applied"  # status changed or payment linked
    STALE = "stale"  # a move the status rules refuse, or a no-op
    IGNORED = "ignored"  # an event type (or variant) the service does not act on
    UNMATCHED = "unmatched"  # no payment found
    ANOMALY = "anomaly"  # amount, currency, owner or booking differ from the payment's


class WebhookEvent(Base):
    """Every provider event received, once per event id; redeliveries bump delivery_count."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    event_id: Mapped[str] = mapped_column(String(EVENT_ID_LENGTH), nullable=False)
    event_type: Mapped[str] = mapped_column(String(128), nullable=False)
    payment_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("payments.id"))
    outcome: Mapped[WebhookOutcome] = mapped_column(
        Enum(WebhookOutcome, name="webhook_outcome", values_callable=lambda e: [m.value for m in e]),
        nullable=False,
    )
    detail: Mapped[str | None] = mapped_column(String(500))
    delivery_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    last_received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __mapper_args__ = {"eager_defaults": True}
    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        Index("ix_webhook_events_received_at_id", "received_at", "id"),
        Index("ix_webhook_events_outcome_received_at", "outcome", "received_at"),
        Index("ix_webhook_events_payment_id", "payment_id"),
    )
