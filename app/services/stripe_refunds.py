"""Stripe's refund events applied to a payment's refunds, through the same rules as the API
(RefundService), on the payment this webhook's transaction has locked.

A Stripe refund is matched by its id (re_...). One this service does not know yet may have been
recorded before Stripe's event gave its id: then it is the payment's oldest refund without a gateway
id, of the same amount, pending or succeeded (or already in the reported status), and it is linked
(a refund.updated event). Otherwise the refund was made elsewhere (the Stripe dashboard) and is
recorded, actor `stripe`. A charge.refunded whose charge carries no refund list (Stripe's default
since API version 2022-11-15) records what the charge says was refunded beyond what is known, as one
pending refund without an id (the charge's amount_refunded counts pending refunds too), which the
refund's own event then links and settles."""

from decimal import Decimal

from app.core.currencies import format_amount
from app.core.database import UnitOfWork
from app.core.errors import PaymentNotRefundable, RefundExceedsRefundable
from app.models import WebhookOutcome
from app.models.enums import RefundStatus
from app.schemas.payment import PaymentRecord
from app.services.refunds import Recorder, Refunded, RefundService
from app.services.stripe_events import GatewayRefund, RefundUpdate, stripe_amount

STRIPE = "stripe"

Outcome = tuple[WebhookOutcome, PaymentRecord | None, str | None]
_PRECEDENCE = (WebhookOutcome.ANOMALY, WebhookOutcome.APPLIED, WebhookOutcome.STALE)


def _money(amount: Decimal, payment: PaymentRecord) -> str:
    return format_amount(amount, payment.currency)


class StripeRefunds:
    def __init__(self, uow: UnitOfWork) -> None:
        self.service = RefundService(uow)
        self.payments = self.service.payments
        self.refunds = self.service.refunds
        self.events = self.service.events

    async def apply(self, update: RefundUpdate, event_id: str) -> Outcome:
        if update.payment_intent_id is None:
            return WebhookOutcome.UNMATCHED, None, "the event names no payment intent"
        payment = await self.payments.find_for_provider_event(
            checkout_session_id=None, payment_intent_id=update.payment_intent_id
        )
        if payment is None:
            return WebhookOutcome.UNMATCHED, None, "no payment with this payment intent"
        currency = (update.currency or "").upper()
        if currency != payment.currency:
            return WebhookOutcome.ANOMALY, payment, f"currency {update.currency!r} differs from the payment's"
        if update.charge_amount_minor is not None:
            charged = stripe_amount(update.charge_amount_minor, currency)
            if charged != payment.amount_total:
                return WebhookOutcome.ANOMALY, payment, f"charge amount {charged} differs from the payment's"
        by = Recorder(STRIPE, event_id)
        results: list[tuple[WebhookOutcome, str]] = []
        for refund in update.refunds:
            outcome, payment, detail = await self._apply_refund(payment, refund, by)
            results.append((outcome, detail))
        if not update.refunds:
            outcome, payment, detail = await self._record_unlisted(payment, update, by)
            results.append((outcome, detail))
        worst = next(outcome for outcome in _PRECEDENCE if any(result[0] is outcome for result in results))
        return worst, payment, "; ".join(detail for _, detail in results)

    async def _apply_refund(
        self, payment: PaymentRecord, reported: GatewayRefund, by: Recorder
    ) -> tuple[WebhookOutcome, PaymentRecord, str]:
        if reported.refund_id is None or reported.amount_minor is None or reported.status is None:
            return WebhookOutcome.ANOMALY, payment, "a refund without id, amount or a known status"
        name = reported.refund_id
        if (reported.currency or "").upper() != payment.currency:
            return WebhookOutcome.ANOMALY, payment, f"refund {name}: currency differs from the payment's"
        amount = stripe_amount(reported.amount_minor, payment.currency)
        linked = False
        found = await self.refunds.find_by_gateway_id(payment.provider, name)
        if found is not None:
            refund = found
            if refund.payment_id != payment.id:
                return WebhookOutcome.ANOMALY, payment, f"refund {name} belongs to payment {refund.payment_id}"
        else:
            # Pending, succeeded, or already the reported status: Stripe does not deliver events in
            # order, and a refund recorded without an id (by charge.refunded, or through the API,
            # possibly as succeeded) is this one if the amount agrees; matching it keeps the money
            # counted once, and a failure after a success then shows as an anomaly.
            statuses = list(dict.fromkeys([RefundStatus.PENDING, RefundStatus.SUCCEEDED, reported.status]))
            unlinked = await self.refunds.find_unlinked(payment.id, amount, statuses)
            if unlinked is None:
                return await self._record_new(payment, reported, amount, by)
            refund = await self.refunds.link(unlinked, name)
            await self.events.of_refund(refund.id, "refund.updated", actor=by.actor)
            linked = True
        if refund.amount != amount:
            return (
                WebhookOutcome.ANOMALY,
                payment,
                f"refund {name}: amount {_money(amount, payment)} differs from {_money(refund.amount, payment)}",
            )
        was = refund.status
        if was == reported.status:
            return (WebhookOutcome.APPLIED if linked else WebhookOutcome.STALE), payment, f"refund {name}: {was.value}"
        if was is RefundStatus.PENDING:
            settled = await self.service.settle(payment, refund, reported.status, reported.failure_reason, by)
            return WebhookOutcome.APPLIED, settled.payment, f"refund {name}: pending -> {reported.status.value}"
        if reported.status is RefundStatus.PENDING:  # a late event: never a downgrade
            outcome = WebhookOutcome.APPLIED if linked else WebhookOutcome.STALE
            return outcome, payment, f"refund {name}: pending after {was.value} not applied"
        return (
            WebhookOutcome.ANOMALY,
            payment,
            f"refund {name}: Stripe reports {reported.status.value} after {was.value}",
        )

    async def _record_new(
        self, payment: PaymentRecord, reported: GatewayRefund, amount: Decimal, by: Recorder
    ) -> tuple[WebhookOutcome, PaymentRecord, str]:
        status = reported.status or RefundStatus.PENDING
        try:
            written = await self.service.record(
                payment,
                amount,
                status=RefundStatus.SUCCEEDED if status is RefundStatus.SUCCEEDED else RefundStatus.PENDING,
                reason=reported.reason,
                refund_id=reported.refund_id,
                metadata=reported.metadata,
                by=by,
            )
        except (PaymentNotRefundable, RefundExceedsRefundable) as refused:
            return (
                WebhookOutcome.ANOMALY,
                payment,
                f"refund {reported.refund_id} of {_money(amount, payment)}: {refused.detail}",
            )
        if status in (RefundStatus.FAILED, RefundStatus.CANCELED):  # reserved, then released at once
            written = await self.service.settle(written.payment, written.refund, status, reported.failure_reason, by)
        return WebhookOutcome.APPLIED, written.payment, f"refund {reported.refund_id} recorded as {status.value}"

    async def _record_unlisted(
        self, payment: PaymentRecord, update: RefundUpdate, by: Recorder
    ) -> tuple[WebhookOutcome, PaymentRecord, str]:
        if update.charge_refunded_minor is None:
            return WebhookOutcome.ANOMALY, payment, "a refund event without refunds or a refunded amount"
        refunded = stripe_amount(update.charge_refunded_minor, payment.currency)
        unknown = refunded - payment.amount_refunded - payment.amount_refund_pending
        if unknown <= 0:
            return (
                WebhookOutcome.STALE,
                payment,
                f"the charge's refunded {_money(refunded, payment)} is already recorded",
            )
        try:
            # Pending: the charge's amount_refunded counts refunds still pending, which may yet fail;
            # the refund's own event (refund.created / refund.updated) links and settles it.
            written: Refunded = await self.service.record(
                payment, unknown, status=RefundStatus.PENDING, reason=None, refund_id=None, metadata={}, by=by
            )
        except (PaymentNotRefundable, RefundExceedsRefundable) as refused:
            return (
                WebhookOutcome.ANOMALY,
                payment,
                f"the charge's refunded {_money(refunded, payment)}: {refused.detail}",
            )
        return (
            WebhookOutcome.APPLIED,
            written.payment,
            f"recorded a pending refund of {_money(unknown, payment)} "
            f"(the charge's refunded {_money(refunded, payment)})",
        )
