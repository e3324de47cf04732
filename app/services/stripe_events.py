"""What a Stripe event means for a payment record. Pure functions: no database, no HTTP."""

from dataclasses import dataclass, field
from typing import Any

from app.models import PaymentStatus

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


def interpret(event_type: str, obj: dict[str, Any]) -> ProviderUpdate:
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
        amount, refunded = _integer(obj, "amount"), _integer(obj, "amount_refunded")
        if amount is None or refunded != amount:
            raise Ignored(f"partial refund ({refunded} of {amount}); the payment stays succeeded")
        return ProviderUpdate(
            target=PaymentStatus.REFUNDED,
            checkout_session_id=None,
            payment_intent_id=_text(obj, "payment_intent"),
            amount_minor=amount,
            currency=_text(obj, "currency"),
            metadata=metadata,
        )
    raise Ignored(f"event type {event_type} is not handled")
