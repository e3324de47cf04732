"""Refunds: the money that goes back for a payment, never more than was paid.

Every write locks the payment's row first (SELECT ... FOR UPDATE), so the refunds of one payment are
written one at a time across all processes, each checked against the sums the previous one left.
The refund row and the payment's sums (amount_refunded, amount_refund_pending) change in the same
transaction, and the payments' CHECK constraints hold those sums to amount_total whatever a caller
does. When the succeeded refunds reach amount_total, the payment moves to refunded in that
transaction too, with its history row."""

import logging
from dataclasses import dataclass
from decimal import Decimal

from app.core.currencies import amount_problem, format_amount
from app.core.database import UnitOfWork
from app.core.errors import (
    DuplicateRefund,
    IllegalStatusTransition,
    InvalidRefund,
    PaymentNotRefundable,
    RefundExceedsRefundable,
    RefundNotFound,
    RefundPending,
)
from app.core.metrics import REFUNDS
from app.core.security import Principal
from app.models import PaymentStatus, RefundReason, RefundStatus
from app.repositories.events import Events
from app.repositories.payments import Payments
from app.repositories.refunds import DuplicateGatewayRefund, NewRefund, RefundPageRows, Refunds
from app.schemas.payment import PaymentRecord
from app.schemas.refund import RefundCreate, RefundListQuery, RefundRecord, RefundStatusUpdate
from app.services.access import ExpectedVersions, check_precondition, check_records_outcomes, visible_to
from app.services.moves import move_locked

logger = logging.getLogger(__name__)

FINAL_REFUND_STATUSES = frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.CANCELED})


@dataclass(frozen=True, slots=True)
class Refunded:
    """A refund as written, and its payment as it is afterwards."""

    refund: RefundRecord
    payment: PaymentRecord


@dataclass(frozen=True, slots=True)
class Recorder:
    """Who records a change, for the refund row and the payment's history."""

    actor: str
    event_id: str | None = None


class RefundService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.refunds = Refunds(uow)
        self.payments = Payments(uow)
        self.events = Events(uow)

    # -- reads ---------------------------------------------------------------------------------

    async def list(self, principal: Principal, payment_id: int, query: RefundListQuery) -> RefundPageRows:
        payment = visible_to(await self.payments.get(payment_id), principal)
        return await self.refunds.page(payment.id, limit=query.size, after=query.position())

    async def get(self, principal: Principal, payment_id: int, refund_id: int) -> RefundRecord:
        payment = visible_to(await self.payments.get(payment_id), principal)
        refund = await self.refunds.get(payment.id, refund_id)
        if refund is None:
            raise RefundNotFound("Refund not found")
        return refund

    # -- API writes ----------------------------------------------------------------------------

    async def create(self, principal: Principal, payment_id: int, data: RefundCreate) -> RefundRecord:
        check_records_outcomes(principal, "Recording a refund")
        async with self.uow.transaction():
            payment = visible_to(await self.payments.get(payment_id, locked=True), principal)
            amount = data.amount if data.amount is not None else payment.refundable()
            if data.amount is not None:
                problem = amount_problem(data.amount, payment.currency)
                if problem is not None:
                    raise InvalidRefund("amount", problem)
            written = await self.record(
                payment,
                amount,
                status=data.status,
                reason=data.reason,
                refund_id=data.refund_id,
                metadata=data.metadata,
                by=Recorder(principal.actor),
            )
            return written.refund

    async def change_status(
        self,
        principal: Principal,
        payment_id: int,
        refund_id: int,
        data: RefundStatusUpdate,
        expected: ExpectedVersions = None,
    ) -> RefundRecord:
        """The outcome of a pending refund, reported by a backend (a gateway without webhooks)."""
        check_records_outcomes(principal, f"Moving a refund to {data.status.value}")
        async with self.uow.transaction():
            payment = visible_to(await self.payments.get(payment_id, locked=True), principal)
            refund = await self.refunds.get(payment.id, refund_id, locked=True)
            if refund is None:
                raise RefundNotFound("Refund not found")
            check_precondition(refund, expected, "refund")
            if refund.status == data.status:
                return refund  # already there: a no-op
            if refund.status in FINAL_REFUND_STATUSES or data.status is RefundStatus.PENDING:
                raise IllegalStatusTransition(f"Cannot move a refund from {refund.status.value} to {data.status.value}")
            settled = await self.settle(payment, refund, data.status, data.failure_reason, Recorder(principal.actor))
            return settled.refund

    async def refund_remaining(
        self, principal: Principal, payment_id: int, expected: ExpectedVersions = None
    ) -> PaymentRecord:
        """A payment moved to refunded: one succeeded refund of everything still refundable, so the
        payment and its refunds never disagree. A pending refund must be settled first."""
        check_records_outcomes(principal, "Moving a payment to refunded")
        async with self.uow.transaction():
            payment = visible_to(await self.payments.get(payment_id, locked=True), principal)
            check_precondition(payment, expected)
            if payment.payment_status is PaymentStatus.REFUNDED:
                return payment  # already there: a no-op
            if payment.payment_status is not PaymentStatus.SUCCEEDED:
                raise IllegalStatusTransition(f"Cannot move a payment from {payment.payment_status.value} to refunded")
            if payment.amount_refund_pending > 0:
                pending = format_amount(payment.amount_refund_pending, payment.currency)
                raise RefundPending(
                    f"Refunds of {pending} {payment.currency} are pending; report their outcome first "
                    "(PATCH .../refunds/{refund}/status)"
                )
            written = await self.record(
                payment,
                payment.refundable(),
                status=RefundStatus.SUCCEEDED,
                reason=None,
                refund_id=None,
                metadata={},
                by=Recorder(principal.actor),
            )
            return written.payment

    # -- on a locked payment (the API above, and provider webhooks) ----------------------------

    async def record(
        self,
        payment: PaymentRecord,
        amount: Decimal,
        *,
        status: RefundStatus,
        reason: RefundReason | None,
        refund_id: str | None,
        metadata: dict[str, str],
        by: Recorder,
    ) -> Refunded:
        """Record a pending or succeeded refund of a payment this transaction has locked."""
        if payment.payment_status is not PaymentStatus.SUCCEEDED:
            raise PaymentNotRefundable(
                f"Only a succeeded payment can be refunded; this one is {payment.payment_status.value}"
            )
        refundable = payment.refundable()
        if amount > refundable or amount <= 0:
            shown = format_amount(refundable, payment.currency)
            detail = (
                f"A refund of {format_amount(amount, payment.currency)} {payment.currency} exceeds what is "
                f"still refundable ({shown} {payment.currency})"
                if refundable > 0
                else "Nothing is left to refund: succeeded and pending refunds already make up the whole amount"
            )
            raise RefundExceedsRefundable(detail, amount_refundable=shown)
        new = NewRefund(
            payment_id=payment.id,
            provider=payment.provider,
            amount=amount,
            currency=payment.currency,
            status=status,
            reason=reason,
            refund_id=refund_id,
            metadata={key: value for key, value in metadata.items() if value != ""},
            actor=by.actor,
        )
        try:
            refund = await self.refunds.insert(new)
        except DuplicateGatewayRefund as duplicate:
            raise DuplicateRefund(f"A refund with refund_id {refund_id} is already recorded") from duplicate
        succeeded = status is RefundStatus.SUCCEEDED
        payment = await self.payments.adjust_refund_sums(
            payment, refunded=amount if succeeded else Decimal(0), pending=Decimal(0) if succeeded else amount
        )
        self._counted(refund, refund.status, by)
        await self.events.of_refund(refund.id, "refund.created", actor=by.actor)
        if succeeded:
            await self.events.of_refund(refund.id, "refund.succeeded", actor=by.actor)
        return Refunded(refund, await self._complete_if_refunded(payment, by))

    async def settle(
        self,
        payment: PaymentRecord,
        refund: RefundRecord,
        status: RefundStatus,
        failure_reason: str | None,
        by: Recorder,
    ) -> Refunded:
        """Move a pending refund of a locked payment to its outcome: succeeded counts it as refunded,
        failed and canceled release the amount it reserved."""
        if refund.status is not RefundStatus.PENDING or status is RefundStatus.PENDING:
            raise IllegalStatusTransition(f"Cannot move a refund from {refund.status.value} to {status.value}")
        refund = await self.refunds.set_status(refund, status, failure_reason)
        succeeded = status is RefundStatus.SUCCEEDED
        payment = await self.payments.adjust_refund_sums(
            payment, refunded=refund.amount if succeeded else Decimal(0), pending=-refund.amount
        )
        self._counted(refund, status, by)
        await self.events.of_refund(refund.id, f"refund.{status.value}", actor=by.actor, previous_status="pending")
        return Refunded(refund, await self._complete_if_refunded(payment, by))

    async def _complete_if_refunded(self, payment: PaymentRecord, by: Recorder) -> PaymentRecord:
        if payment.amount_refunded < payment.amount_total:
            return payment
        return await move_locked(
            self.payments,
            payment,
            PaymentStatus.REFUNDED,
            actor=by.actor,
            request_id=self.uow.request_id,
            event_id=by.event_id,
        )

    @staticmethod
    def _counted(refund: RefundRecord, status: RefundStatus, by: Recorder) -> None:
        REFUNDS.labels(status.value, refund.currency).inc()
        logger.info(
            "refund %s",
            status.value,
            extra={
                "payment_id": refund.payment_id,
                "refund_id": refund.id,
                "to_status": status.value,
                "actor": by.actor,
                "event_id": by.event_id,
            },
        )
