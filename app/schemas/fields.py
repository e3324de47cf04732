"""Reusable annotated field types for request bodies and query strings."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, EmailStr, Field, StringConstraints

from app.core.currencies import MINOR_UNITS
from app.models.payment import (
    DESCRIPTION_LENGTH,
    EMAIL_LENGTH,
    GATEWAY_ID_LENGTH,
    PAYMENT_METHOD_TYPE_LENGTH,
    REFERENCE_LENGTH,
)

# Printable ASCII without spaces: what Stripe, PayPal, Square and Razorpay ids look like.
GATEWAY_ID_PATTERN = r"^[\x21-\x7e]+$"

GatewayId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=GATEWAY_ID_LENGTH, pattern=GATEWAY_ID_PATTERN),
]
# PostgreSQL text and jsonb cannot hold the NUL character: refused here as a 422, not by the database.
NO_NUL_PATTERN = r"^[^\x00]*$"

Reference = Annotated[str, StringConstraints(min_length=1, max_length=REFERENCE_LENGTH, pattern=NO_NUL_PATTERN)]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_LENGTH, pattern=NO_NUL_PATTERN)]
CustomerEmail = Annotated[EmailStr, StringConstraints(max_length=EMAIL_LENGTH)]
PaymentMethodType = Annotated[
    str,
    StringConstraints(min_length=1, max_length=PAYMENT_METHOD_TYPE_LENGTH, pattern=r"^[A-Za-z0-9_\-]+$"),
]
PaymentMethodTypes = Annotated[list[PaymentMethodType], Field(max_length=20)]


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _known_currency(value: str) -> str:
    if value not in MINOR_UNITS:
        raise ValueError(f"unknown ISO 4217 currency code {value!r}")
    return value


CurrencyCode = Annotated[
    str,
    BeforeValidator(_upper),
    StringConstraints(min_length=3, max_length=3),
    AfterValidator(_known_currency),
    Field(description="ISO 4217 code, any case; stored and returned upper-case", examples=["USD"]),
]

# A JSON number or a decimal string; checked against the currency's minor units by the model.
Amount = Annotated[
    Decimal,
    Field(
        allow_inf_nan=False,
        description="Decimal string (recommended) or JSON number; > 0, at most 99999999.99, "
        "and no more decimal places than the currency allows",
        examples=["99.99"],
    ),
]


def _as_utc(value: datetime) -> datetime:
    """Naive means UTC. Converting up front also rejects instants outside years 1-9999 in UTC
    (e.g. 9999-12-31T23:59:59-01:00), which PostgreSQL could not compare against."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("date-time is out of range once converted to UTC") from exc


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


METADATA_MAX_KEYS = 50
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=NO_NUL_PATTERN)]
MetadataValue = Annotated[str, StringConstraints(max_length=500, pattern=NO_NUL_PATTERN)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(
        max_length=METADATA_MAX_KEYS,
        description="String keys (<= 40 chars) to string values (<= 500 chars), at most 50 keys. "
        "On update, keys are merged into the stored ones; an empty-string value removes that key.",
        examples=[{"order_ref": "A-1001"}],
    ),
]
