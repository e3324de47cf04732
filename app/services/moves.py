"""A status move of a payment this transaction has locked, counted and logged: the one way webhooks
and refunds move a payment."""

import logging

from app.core.errors import IllegalStatusTransition
from app.core.metrics import EVENTS_WRITTEN, STATUS_TRANSITIONS
from app.models import PaymentStatus
from app.repositories.payments import Move, Payments
from app.schemas.payment import PaymentRecord
from app.services.status_rules import can_transition

logger = logging.getLogger(__name__)


def record_move(move: Move, target: PaymentStatus, actor: str, event_id: str | None) -> None:
    STATUS_TRANSITIONS.labels(move.from_status.value, target.value).inc()
    EVENTS_WRITTEN.labels(f"payment.{target.value}").inc()  # written by the move's statement
    logger.info(
        "payment status changed",
        extra={
            "payment_id": move.payment.id,
            "from_status": move.from_status.value,
            "to_status": target.value,
            "actor": actor,
            "event_id": event_id,
        },
    )


async def move_locked(
    payments: Payments,
    payment: PaymentRecord,
    target: PaymentStatus,
    *,
    actor: str,
    request_id: str | None,
    event_id: str | None,
) -> PaymentRecord:
    """Apply the status rules to a payment this transaction has locked, and record the move; the
    current status is a no-op."""
    if payment.payment_status == target:
        return payment
    if not can_transition(payment.payment_status, target):
        raise IllegalStatusTransition(f"Cannot move a payment from {payment.payment_status.value} to {target.value}")
    move = await payments.move(
        payment.id,
        target,
        from_statuses=[payment.payment_status],
        owner=None,
        versions=None,
        actor=actor,
        request_id=request_id,
        event_id=event_id,
    )
    if move is None or not move.moved:  # impossible: this transaction holds the row lock
        raise LookupError(f"payment {payment.id} could not be moved although it is locked")
    record_move(move, target, actor, event_id)
    return move.payment
