from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.fields import UtcDatetime

EventType = Literal[
    "payment.created",
    "payment.updated",
    "payment.pending",
    "payment.processing",
    "payment.succeeded",
    "payment.failed",
    "payment.canceled",
    "payment.refunded",
    "payment.anomaly",
    "refund.created",
    "refund.updated",
    "refund.succeeded",
    "refund.failed",
    "refund.canceled",
]


class EventData(BaseModel):
    object: dict[str, Any] = Field(
        description="The payment (or, for refund.* events, the refund) exactly as the API returned it at that moment"
    )
    previous_status: str | None = Field(description="For status events: the status it left")
    actor: str = Field(description="Who made the change: user:<id>, service:<id>, admin:<id>, stripe")
    request_id: str | None
    detail: str | None = Field(default=None, description="payment.anomaly: what disagreed")


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event in structured JSON mode, as published and as listed."""

    model_config = ConfigDict(frozen=True)

    specversion: str = "1.0"
    id: str = Field(description="Stable across redeliveries: consumers dedupe by it")
    source: str
    type: str
    subject: str = Field(description="payments/<the payment's id>")
    time: datetime
    datacontenttype: str = "application/json"
    position: int | None = Field(
        description="Extension attribute: the event's place in commit order (null until it is given one)"
    )
    data: EventData


class EventListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=100, ge=1, le=100)
    cursor: int | None = Field(
        default=None,
        ge=0,
        lt=2**63,
        description="The `next_cursor` of the previous page: the events after that position",
    )
    type: EventType | None = None
    payment_id: int | None = Field(default=None, ge=1, lt=2**63)
    created_from: UtcDatetime | None = Field(default=None, description="Inclusive; ISO 8601, UTC if no offset")
    created_to: UtcDatetime | None = Field(default=None, description="Inclusive; ISO 8601, UTC if no offset")

    @model_validator(mode="after")
    def _range_in_order(self) -> Self:
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise ValueError("created_from must not be after created_to")
        return self


class EventPage(BaseModel):
    items: list[CloudEvent]
    next_cursor: int | None = Field(
        description="The position of this page's last event, or the cursor sent when the page is empty (null if "
        "none was sent): pass it as `cursor` to poll for what comes next. Events committed later always come after it"
    )
