from datetime import datetime
from decimal import Decimal
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_serializer, field_validator, model_validator

from app.core.currencies import format_amount
from app.models.enums import RefundReason, RefundStatus
from app.models.refund import FAILURE_REASON_LENGTH
from app.schemas.fields import NO_NUL_PATTERN, Amount, GatewayId, Metadata
from app.schemas.payment import BookingPaymentQuery

FailureReason = Annotated[
    str, StringConstraints(min_length=1, max_length=FAILURE_REASON_LENGTH, pattern=NO_NUL_PATTERN)
]


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount | None = Field(
        default=None,
        description="In the payment's currency, with at most its minor-unit digits; "
        "default: everything still refundable (the payment's amount_refundable)",
    )
    reason: RefundReason | None = None
    refund_id: GatewayId | None = Field(
        default=None,
        description="The gateway's refund id (e.g. Stripe's re_...), unique per provider",
        examples=["re_3Nabc123"],
    )
    metadata: Metadata = Field(default_factory=dict)
    status: RefundStatus = Field(
        default=RefundStatus.PENDING,
        description="pending (default) until the gateway reports the outcome; succeeded when the gateway "
        "has already confirmed it",
    )

    @field_validator("amount")
    @classmethod
    def _positive(cls, amount: Decimal | None) -> Decimal | None:
        if amount is not None and amount <= 0:
            raise ValueError("must be greater than 0")
        return amount

    @field_validator("status")
    @classmethod
    def _recordable(cls, status: RefundStatus) -> RefundStatus:
        if status not in (RefundStatus.PENDING, RefundStatus.SUCCEEDED):
            raise ValueError("a refund is recorded as pending or succeeded")
        return status


class RefundStatusUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: RefundStatus
    failure_reason: FailureReason | None = Field(default=None, description="Only with status failed")

    @model_validator(mode="after")
    def _failure_reason_only_when_failed(self) -> Self:
        if self.failure_reason is not None and self.status != RefundStatus.FAILED:
            raise ValueError("failure_reason is only for status failed")
        return self


class RefundRecord(BaseModel):
    """A refund as stored, built from its row: what the services work with and the routes return."""

    model_config = ConfigDict(frozen=True)

    id: int
    payment_id: int = Field(description="The payment's id in this service")
    amount: Annotated[Decimal, Field(description="Decimal string with exactly the currency's minor-unit digits")]
    currency: str
    status: RefundStatus
    reason: RefundReason | None
    refund_id: str | None = Field(description="The gateway's refund id")
    metadata: dict[str, str]
    failure_reason: str | None
    actor: str = Field(description="Who recorded it: user:<id>, service:<id>, admin:<id>, or the provider's name")
    version: int
    created_at: datetime
    updated_at: datetime

    @field_serializer("amount", return_type=str)
    def _amount_as_string(self, amount: Decimal) -> str:
        return format_amount(amount, self.currency)


class RefundListQuery(BookingPaymentQuery):
    """A page of a payment's refunds, oldest first: 100 at most, after a cursor."""


class RefundPage(BaseModel):
    items: list[RefundRecord]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next, later refunds; null on the last page")
