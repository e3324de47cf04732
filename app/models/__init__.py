from app.models.base import Base
from app.models.enums import PaymentProvider, PaymentStatus, RefundReason, RefundStatus
from app.models.event import Event
from app.models.history import PaymentStatusHistory
from app.models.idempotency import IdempotencyKey, IdempotencyState
from app.models.payment import Payment
from app.models.refund import Refund
from app.models.webhook import WebhookEvent, WebhookOutcome

__all__ = [
    "Base",
    "Event",
    "IdempotencyKey",
    "IdempotencyState",
    "Payment",
    "PaymentProvider",
    "PaymentStatus",
    "PaymentStatusHistory",
    "Refund",
    "RefundReason",
    "RefundStatus",
    "WebhookEvent",
    "WebhookOutcome",
]
