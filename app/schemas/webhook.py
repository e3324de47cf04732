from datetime import datetime
from math import ceil
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.models.webhook import EVENT_ID_LENGTH, WebhookOutcome


class StripeEventData(BaseModel):
    object: dict[str, Any]


class StripeEvent(BaseModel):
    """The part of a Stripe event object this service reads; other fields are ignored."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=EVENT_ID_LENGTH)]
    object: str = Field(pattern="^event$")
    type: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    data: StripeEventData


class WebhookAck(BaseModel):
    received: bool = True
    event_id: str
    outcome: WebhookOutcome
    duplicate: bool = Field(description="True when this event id was received before; nothing was applied again")


class WebhookEventRecord(BaseModel):
    """A provider event as recorded."""

    model_config = ConfigDict(frozen=True)

    id: int
    provider: str
    event_id: str
    event_type: str
    payment_id: int | None
    outcome: WebhookOutcome
    detail: str | None
    delivery_count: int
    received_at: datetime
    last_received_at: datetime


class WebhookEventQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: int = Field(default=1, ge=1, le=1_000_000)
    size: int = Field(default=20, ge=1, le=100)
    outcome: WebhookOutcome | None = None


class WebhookEventPage(BaseModel):
    items: list[WebhookEventRecord]
    total: int
    page: int
    size: int
    pages: int

    @classmethod
    def build(cls, items: list[WebhookEventRecord], total: int, page: int, size: int) -> "WebhookEventPage":
        return cls(items=items, total=total, page=page, size=size, pages=ceil(total / size))
