from datetime import datetime
from uuid import UUID

from sqlalchemy import BigInteger, DateTime, Identity, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base
from app.models.history import ACTOR_LENGTH, REQUEST_ID_LENGTH

EVENT_TYPE_LENGTH = 64


class Event(Base):
    """The transactional outbox: one row per change other services must hear of, written in the
    transaction of the change (app/repositories/events.py), published by the relay (app/relay.py)
    and listed by GET /api/v1/events.

    `id` follows insertion, not commit: a transaction that took a lower id may commit after one with
    a higher id. So events are read and published by `position`, which is given (in id order, under
    an advisory lock) only to events already committed, and is therefore never given to an event
    that commits later than one already positioned. See docs/events.md."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # The CloudEvents id: stable across redeliveries, what consumers dedupe by.
    event_id: Mapped[UUID] = mapped_column(
        PgUUID(as_uuid=True), nullable=False, unique=True, server_default=text("gen_random_uuid()")
    )
    type: Mapped[str] = mapped_column(String(EVENT_TYPE_LENGTH), nullable=False)
    payment_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    refund_id: Mapped[int | None] = mapped_column(BigInteger)
    # The payment's (or refund's) row as it was written, as JSON text (numbers exact): rendered as
    # the API renders it when the event is read or published.
    snapshot: Mapped[str] = mapped_column(Text, nullable=False)
    previous_status: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH), nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_LENGTH))
    detail: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    position: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # The events not positioned yet, in id order (the sequencer's scan).
        Index("ix_events_unpositioned", "id", postgresql_where=text("position IS NULL")),
        # The positioned events not published yet, in order (the relay's scan).
        Index(
            "ix_events_unpublished",
            "position",
            postgresql_where=text("position IS NOT NULL AND published_at IS NULL"),
        ),
        Index("ix_events_payment_id_position", "payment_id", "position"),
        Index("ix_events_created_at", "created_at"),
    )
