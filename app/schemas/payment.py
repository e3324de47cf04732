import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationInfo,
    computed_field,
    field_serializer,
    field_validator,
    model_validator,
)

from app.core.currencies import amount_problem, format_amount
from app.core.pagination import Keyset, decode_cursor
from app.models.enums import PaymentProvider, PaymentStatus
from app.schemas.fields import (
    Amount,
    CurrencyCode,
    CustomerEmail,
    Description,
    GatewayId,
    Metadata,
    PaymentMethodTypes,
    Reference,
    UtcDatetime,
)


def _check_amount(amount: Decimal, info: ValidationInfo) -> Decimal:
    currency = info.data.get("currency")
    if currency is not None:  # an invalid currency is reported on its own field
        problem = amount_problem(amount, currency)
        if problem is not None:
            raise ValueError(problem)
    elif amount <= 0:
        raise ValueError("must be greater than 0")
    return amount


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_id: GatewayId | None = Field(default=None, examples=["pi_3Nabc123"])
    checkout_session_id: GatewayId | None = Field(default=None, examples=["cs_test_a1b2c3"])
    payment_method_id: GatewayId | None = None
    payment_method_types: PaymentMethodTypes = Field(default_factory=list, examples=[["card"]])
    payment_status: PaymentStatus = PaymentStatus.PENDING
    provider: PaymentProvider
    currency: CurrencyCode
    amount_total: Amount
    customer_id: Reference | None = None
    customer_email: CustomerEmail | None = None
    booking_id: Reference | None = None
    property_id: Reference | None = None
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)
    user_id: int | None = Field(
        default=None,
        deprecated=True,
        description="Ignored: the owner is always the caller identified by the token.",
    )

    @field_validator("amount_total")
    @classmethod
    def _amount_matches_currency(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        return _check_amount(amount, info)

    @field_validator("payment_status")
    @classmethod
    def _not_refunded(cls, status: PaymentStatus) -> PaymentStatus:
        if status is PaymentStatus.REFUNDED:
            raise ValueError("create the payment as succeeded, then record its refund (POST .../refunds)")
        return status

    @model_validator(mode="after")
    def _needs_a_gateway_reference(self) -> Self:
        if self.payment_id is None and self.checkout_session_id is None:
            raise ValueError("payment_id or checkout_session_id is required")
        return self


class PaymentUpdate(BaseModel):
    """PUT body: only the fields present are changed. Status, owner, provider and timestamps are
    not fields here, so sending them is a 422 like any unknown field."""

    model_config = ConfigDict(extra="forbid")

    payment_id: GatewayId | None = None
    checkout_session_id: GatewayId | None = None
    payment_method_id: GatewayId | None = None
    payment_method_types: PaymentMethodTypes | None = None
    currency: CurrencyCode | None = None
    amount_total: Amount | None = None
    customer_id: Reference | None = None
    customer_email: CustomerEmail | None = None
    booking_id: Reference | None = None
    property_id: Reference | None = None
    description: Description | None = None
    metadata: Metadata | None = None

    @field_validator("payment_method_types", "currency", "amount_total", "metadata")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be omitted but not null")
        return value

    @field_validator("amount_total")
    @classmethod
    def _amount_matches_currency(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        return _check_amount(amount, info) if info.data.get("currency") else amount

    def changes(self) -> dict[str, object]:
        return self.model_dump(include=self.model_fields_set)


class PaymentStatusUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_status: PaymentStatus


class PaymentRecord(BaseModel):
    """A payment as stored, built from its row: what the services work with and every route
    returns."""

    model_config = ConfigDict(frozen=True)

    id: int
    payment_id: str | None
    checkout_session_id: str | None
    payment_method_id: str | None
    payment_method_types: list[str]
    payment_status: PaymentStatus
    provider: PaymentProvider
    currency: str
    amount_total: Annotated[Decimal, Field(description="Decimal string with exactly the currency's minor-unit digits")]
    amount_refunded: Annotated[Decimal, Field(description="The sum of the payment's succeeded refunds")] = Decimal(0)
    # Reserved by pending refunds; shown through amount_refundable.
    amount_refund_pending: Annotated[Decimal, Field(exclude=True)] = Decimal(0)
    customer_id: str | None
    customer_email: str | None
    booking_id: str | None
    property_id: str | None
    user_id: int
    description: str | None
    metadata: dict[str, str]
    version: int
    created_at: datetime
    updated_at: datetime

    @field_serializer("amount_total", "amount_refunded", return_type=str)
    def _amount_as_string(self, amount: Decimal) -> str:
        return format_amount(amount, self.currency)

    def refundable(self) -> Decimal:
        """amount_total minus the succeeded and the pending refunds."""
        return self.amount_total - self.amount_refunded - self.amount_refund_pending

    @computed_field(description="amount_total minus succeeded and pending refunds: the most a new refund may be")  # type: ignore[prop-decorator]
    @property
    def amount_refundable(self) -> str:
        return format_amount(self.refundable(), self.currency)


_RANGE_DOC = "Inclusive; ISO 8601 date-time, UTC when it has no offset"


_METADATA_PARAMETER = re.compile(r"metadata\[([^\[\]]{1,40})\]")
METADATA_VALUE_LENGTH = 500


class PaymentListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: int = Field(default=1, ge=1, le=1_000_000, description="Offset paging, from 1")
    size: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(
        default=None,
        max_length=200,
        description="Keyset paging: the `next_cursor` of the previous page. Every page costs the same, "
        "however deep; `page` must then be left out.",
    )
    include_total: bool | None = Field(
        default=None,
        description="Count the matching rows for `total` and `pages`. Default: true for offset paging, "
        "false with a cursor (counting is the cost that grows with the data).",
    )
    payment_status: PaymentStatus | None = None
    provider: PaymentProvider | None = None
    currency: CurrencyCode | None = None
    booking_id: Reference | None = None
    property_id: Reference | None = None
    created_from: UtcDatetime | None = Field(default=None, description="Inclusive; ISO 8601, UTC if no offset")
    created_to: UtcDatetime | None = Field(default=None, description="Inclusive; ISO 8601, UTC if no offset")
    # `metadata[<key>]=<value>` parameters (not expressible as one OpenAPI parameter; see the README).
    _metadata_filter: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _take_metadata_filter(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        found: dict[str, str] = {}
        if isinstance(data, Mapping):
            data = dict(data)
            for name in [name for name in data if _METADATA_PARAMETER.fullmatch(str(name))]:
                value = data.pop(name)
                if not isinstance(value, str) or len(value) > METADATA_VALUE_LENGTH or "\x00" in f"{name}{value}":
                    raise ValueError(
                        f"{name} must be a string of at most {METADATA_VALUE_LENGTH} characters, without NUL"
                    )
                found[str(name)[len("metadata[") : -1]] = value
        query = handler(data)
        query._metadata_filter = found
        return query

    def metadata_filter(self) -> dict[str, str]:
        return self._metadata_filter

    @model_validator(mode="after")
    def _range_in_order(self) -> Self:
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise ValueError("created_from must not be after created_to")
        return self

    @field_validator("cursor")
    @classmethod
    def _cursor_is_ours(cls, cursor: str | None) -> str | None:
        if cursor is not None:
            decode_cursor(cursor)
        return cursor

    @model_validator(mode="after")
    def _one_way_of_paging(self) -> Self:
        if self.cursor is not None and "page" in self.model_fields_set:
            raise ValueError("use either page or cursor, not both")
        return self

    def position(self) -> Keyset | None:
        return decode_cursor(self.cursor) if self.cursor is not None else None

    def counts_total(self) -> bool:
        return self.include_total if self.include_total is not None else self.cursor is None


BOOKING_PAGE_MAX = 100


class BookingPaymentQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=BOOKING_PAGE_MAX, ge=1, le=BOOKING_PAGE_MAX)
    cursor: str | None = Field(default=None, description="The `next_cursor` of the previous page")

    @field_validator("cursor")
    @classmethod
    def _cursor_is_ours(cls, cursor: str | None) -> str | None:
        if cursor is not None:
            decode_cursor(cursor)
        return cursor

    def position(self) -> Keyset | None:
        return decode_cursor(self.cursor) if self.cursor is not None else None


class BookingPaymentPage(BaseModel):
    items: list[PaymentRecord]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next, later payments; null on the last page")


class AdminPaymentListQuery(PaymentListQuery):
    user_id: int | None = Field(default=None, ge=-(2**63), lt=2**63)


class PaymentPage(BaseModel):
    items: list[PaymentRecord]
    total: int | None = Field(description="Rows matching the filters; null when not counted (include_total)")
    page: int | None = Field(description="The offset page; null for a cursor page")
    size: int
    pages: int | None = Field(description="ceil(total / size); 0 when there are no rows; null when not counted")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class StatusChange(BaseModel):
    """One entry of a payment's status history, as stored."""

    model_config = ConfigDict(frozen=True)

    id: int
    payment_id: int
    from_status: PaymentStatus | None
    to_status: PaymentStatus
    actor: str = Field(description='"user:<id>" for API calls, the provider\'s name for webhooks')
    request_id: str | None
    event_id: str | None = Field(description="The provider's event id when a webhook made the change")
    created_at: datetime
