"""Provider webhooks: each event is recorded once, and moves its payment through the same status
rules as the API. Whatever the outcome, the provider gets a 2xx (it would retry an error for days)."""

import logging
from dataclasses import dataclass

from app.core.currencies import MINOR_UNITS
from app.core.database import UnitOfWork
from app.core.metrics import WEBHOOK_EVENTS
from app.models import WebhookOutcome
from app.repositories.events import Events
from app.repositories.payments import Payments, UniqueViolation
from app.repositories.webhooks import WebhookEvents
from app.schemas.payment import PaymentRecord
from app.schemas.webhook import StripeEvent, WebhookEventRecord
from app.services.moves import move_locked
from app.services.status_rules import can_transition
from app.services.stripe_events import Ignored, ProviderUpdate, RefundUpdate, interpret, stripe_amount
from app.services.stripe_refunds import STRIPE, StripeRefunds

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WebhookResult:
    outcome: WebhookOutcome
    duplicate: bool


def amount_mismatch(payment: PaymentRecord, update: ProviderUpdate) -> str | None:
    """Why the event's amount or currency differs from the payment's, or None when they agree.
    Stripe sends integer minor units; the ISO 4217 exponent (or Stripe's own, for the few currencies
    where they differ) turns them into a decimal amount."""
    if update.currency is not None:
        currency = update.currency.upper()
        if currency != payment.currency:
            return f"currency {currency} differs from the payment's {payment.currency}"
        if update.amount_minor is not None:
            amount = stripe_amount(update.amount_minor, currency)
            if amount != payment.amount_total:
                return f"amount {amount} {currency} differs from the payment's {payment.amount_total.normalize()}"
    elif update.amount_minor is not None:
        return "amount without a currency"
    return None


def owner_mismatch(payment: PaymentRecord, update: ProviderUpdate) -> str | None:
    """Why the Stripe object's metadata names another user or booking than the payment's, or None.
    A user who learns someone else's checkout session id could record it under their own account
    first; an integration that puts `user_id` and `booking_id` in the session's metadata makes that
    payment an anomaly instead of a success credited to the wrong guest. A payment recorded without
    a booking_id is not compared on it."""
    user_id = update.metadata.get("user_id")
    if user_id is not None and user_id != str(payment.user_id):
        return f"metadata user_id {user_id} differs from the payment's owner {payment.user_id}"
    booking_id = update.metadata.get("booking_id")
    if booking_id is not None and payment.booking_id is not None and booking_id != payment.booking_id:
        return f"metadata booking_id {booking_id} differs from the payment's {payment.booking_id}"
    return None


class StripeWebhookService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.events = WebhookEvents(uow)
        self.payments = Payments(uow)

    async def handle(self, event: StripeEvent) -> WebhookResult:
        """Record the event once and apply it, in one transaction: a redelivery racing the first
        delivery waits for it at the event's unique key."""
        async with self.uow.transaction():
            recorded = await self.events.register(STRIPE, event.id, event.type)
            if recorded is None:
                known = await self.events.count_redelivery(STRIPE, event.id)
                return WebhookResult(known.outcome, duplicate=True)
            outcome, payment, detail = await self._apply(event)
            if outcome is WebhookOutcome.ANOMALY and payment is not None:
                await Events(self.uow).of_payment(payment.id, "payment.anomaly", actor=STRIPE, detail=detail)
            payment_id = payment.id if payment else None
            await self.events.set_outcome(recorded, outcome, payment_id=payment_id, detail=detail)
        WEBHOOK_EVENTS.labels(STRIPE, outcome.value).inc()
        log = logger.warning if outcome is WebhookOutcome.ANOMALY else logger.info
        log(
            "stripe event %s (%s): %s%s",
            event.id,
            event.type,
            outcome.value,
            f" - {detail}" if detail else "",
            extra={"event_id": event.id, "outcome": outcome.value, "payment_id": payment.id if payment else None},
        )
        return WebhookResult(outcome, duplicate=False)

    async def _apply(self, event: StripeEvent) -> tuple[WebhookOutcome, PaymentRecord | None, str | None]:
        try:
            update = interpret(event.type, event.data.object)
        except Ignored as reason:
            return WebhookOutcome.IGNORED, None, str(reason)
        if isinstance(update, RefundUpdate):
            return await StripeRefunds(self.uow).apply(update, event.id)
        payment = await self.payments.find_for_provider_event(
            checkout_session_id=update.checkout_session_id, payment_intent_id=update.payment_intent_id
        )
        if payment is None:
            return WebhookOutcome.UNMATCHED, None, "no payment with this checkout session or payment intent"
        if update.currency is not None and update.currency.upper() not in MINOR_UNITS:
            return WebhookOutcome.ANOMALY, payment, f"unknown currency {update.currency!r}"
        mismatch = amount_mismatch(payment, update) or owner_mismatch(payment, update)
        if mismatch is not None:
            return WebhookOutcome.ANOMALY, payment, mismatch

        linked = False
        if update.payment_intent_id is not None and payment.payment_id not in (None, update.payment_intent_id):
            return WebhookOutcome.ANOMALY, payment, "the event's payment intent differs from the payment's"
        if update.payment_intent_id is not None and payment.payment_id is None:
            try:
                async with self.uow.savepoint():
                    payment = await self.payments.update(payment, {"payment_id": update.payment_intent_id})
            except UniqueViolation:
                return WebhookOutcome.ANOMALY, payment, "its payment intent belongs to another payment"
            await Events(self.uow).of_payment(payment.id, "payment.updated", actor=STRIPE)
            linked = True
        current = payment.payment_status
        if current == update.target or not can_transition(current, update.target):
            detail = f"{current.value} -> {update.target.value} not applied"
            return (WebhookOutcome.APPLIED if linked else WebhookOutcome.STALE), payment, detail
        await move_locked(
            self.payments, payment, update.target, actor=STRIPE, request_id=self.uow.request_id, event_id=event.id
        )
        return WebhookOutcome.APPLIED, payment, f"{current.value} -> {update.target.value}"

    async def list_events(
        self, *, outcome: WebhookOutcome | None, page: int, size: int
    ) -> tuple[list[WebhookEventRecord], int]:
        return await self.events.list_page(outcome=outcome, offset=(page - 1) * size, limit=size)
