"""What a Stripe event means for a payment record. Pure functions: no database, no HTTP."""

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.core.currencies import MINOR_UNITS
from app.models import PaymentStatus, RefundReason, RefundStatus

# Where Stripe's integer amounts do not follow the ISO 4217 exponent (Stripe's "zero-decimal" and
# "special case" currencies): ISK and UGX are sent with two decimals, MGA with none.
STRIPE_MINOR_UNITS = {"ISK": 2, "UGX": 2, "MGA": 0}


def stripe_amount(amount_minor: int, currency: str) -> Decimal:
    """Stripe's integer amount in `currency` (upper-case, known) as a decimal amount."""
    return Decimal(amount_minor).scaleb(-STRIPE_MINOR_UNITS.get(currency, MINOR_UNITS[currency]))


# checkout.session.completed is decided by the session's payment_status.
_COMPLETED_SESSION = {"paid": PaymentStatus.SUCCEEDED, "unpaid": PaymentStatus.PROCESSING}
_CHECKOUT_SESSION_EVENTS = {
    "checkout.session.async_payment_succeeded": PaymentStatus.SUCCEEDED,
    "checkout.session.async_payment_failed": PaymentStatus.FAILED,
    "checkout.session.expired": PaymentStatus.CANCELED,
}
_PAYMENT_INTENT_EVENTS = {
    "payment_intent.processing": PaymentStatus.PROCESSING,
    "payment_intent.succeeded": PaymentStatus.SUCCEEDED,
    "payment_intent.payment_failed": PaymentStatus.FAILED,
    "payment_intent.canceled": PaymentStatus.CANCELED,
}


# Events whose object is a Stripe Refund.
_REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"})
_REFUND_STATUSES = {
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,  # waiting for the customer's details: still pending
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.CANCELED,
}
_REFUND_REASONS = {
    "duplicate": RefundReason.DUPLICATE,
    "fraudulent": RefundReason.FRAUDULENT,
    "requested_by_customer": RefundReason.REQUESTED_BY_CUSTOMER,
}


@dataclass(frozen=True, slots=True)
class GatewayRefund:
    """A Stripe Refund object, as far as this service reads it."""

    refund_id: str | None
    amount_minor: int | None
    currency: str | None
    status: RefundStatus | None  # None: a status this service does not know
    reason: RefundReason | None
    failure_reason: str | None
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class RefundUpdate:
    """Refunds of the payment with this payment intent: the Refund objects the event carries, and
    for charge.refunded the charge's amount and its refunded total (its refund list may be left out)."""

    payment_intent_id: str | None
    refunds: list[GatewayRefund]
    charge_amount_minor: int | None
    charge_refunded_minor: int | None
    currency: str | None


@dataclass(frozen=True, slots=True)
class ProviderUpdate:
    """The status an event asks for, how to find the payment, and the amount to check."""

    target: PaymentStatus
    checkout_session_id: str | None
    payment_intent_id: str | None
    amount_minor: int | None
    currency: str | None
    # The Stripe object's metadata: who and what the integration created it for (see owner_mismatch).
    metadata: dict[str, str] = field(default_factory=dict)


class Ignored(Exception):
    """The event is well-formed but asks nothing of a payment record."""


def _text(obj: dict[str, Any], field: str) -> str | None:
    value = obj.get(field)
    if isinstance(value, dict):  # an expanded object
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _integer(obj: dict[str, Any], field: str) -> int | None:
    value = obj.get(field)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _metadata(obj: dict[str, Any]) -> dict[str, str]:
    value = obj.get("metadata")
    if not isinstance(value, dict):
        return {}
    return {key: item for key, item in value.items() if isinstance(key, str) and isinstance(item, str)}


def interpret(event_type: str, obj: dict[str, Any]) -> ProviderUpdate | RefundUpdate:
    """Raise Ignored for events (or variants) the service does not act on."""
    metadata = _metadata(obj)
    if event_type.startswith("checkout.session."):
        if event_type == "checkout.session.completed":
            session_status = obj.get("payment_status")
            if session_status not in _COMPLETED_SESSION:
                raise Ignored(f"checkout session completed with payment_status {session_status!r}")
            target = _COMPLETED_SESSION[session_status]
        elif event_type in _CHECKOUT_SESSION_EVENTS:
            target = _CHECKOUT_SESSION_EVENTS[event_type]
        else:
            raise Ignored(f"event type {event_type} is not handled")
        return ProviderUpdate(
            target=target,
            checkout_session_id=_text(obj, "id"),
            payment_intent_id=_text(obj, "payment_intent"),
            amount_minor=_integer(obj, "amount_total"),
            currency=_text(obj, "currency"),
            metadata=metadata,
        )
    if event_type in _PAYMENT_INTENT_EVENTS:
        return ProviderUpdate(
            target=_PAYMENT_INTENT_EVENTS[event_type],
            checkout_session_id=None,
            payment_intent_id=_text(obj, "id"),
            amount_minor=_integer(obj, "amount"),
            currency=_text(obj, "currency"),
            metadata=metadata,
        )
    if event_type == "charge.refunded":
        listed = obj.get("refunds")
        data = listed.get("data") if isinstance(listed, dict) else None
        return RefundUpdate(
            payment_intent_id=_text(obj, "payment_intent"),
            refunds=[_refund(item) for item in data if isinstance(item, dict)] if isinstance(data, list) else [],
            charge_amount_minor=_integer(obj, "amount"),
            charge_refunded_minor=_integer(obj, "amount_refunded"),
            currency=_text(obj, "currency"),
        )
    if event_type in _REFUND_EVENTS:
        return RefundUpdate(
            payment_intent_id=_text(obj, "payment_intent"),
            refunds=[_refund(obj)],
            charge_amount_minor=None,
            charge_refunded_minor=None,
            currency=_text(obj, "currency"),
        )
    raise Ignored(f"event type {event_type} is not handled")


def _refund(obj: dict[str, Any]) -> GatewayRefund:
    status, reason = _text(obj, "status"), _text(obj, "reason")
    return GatewayRefund(
        refund_id=_text(obj, "id"),
        amount_minor=_integer(obj, "amount"),
        currency=_text(obj, "currency"),
        status=_REFUND_STATUSES.get(status) if status else None,
        reason=_REFUND_REASONS.get(reason, RefundReason.OTHER) if reason else None,
        failure_reason=_text(obj, "failure_reason"),
        metadata=_metadata(obj),
    )
