"""Business rules for payments: ownership, what may change, status moves and their history."""

import logging
from collections.abc import Collection
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.currencies import amount_problem
from app.core.errors import (
    DuplicatePayment,
    IllegalStatusTransition,
    ImmutableField,
    InvalidPayment,
    PaymentNotFound,
    PreconditionFailed,
)
from app.core.metrics import PAYMENTS_CREATED, STATUS_TRANSITIONS
from app.core.security import Principal
from app.models import Payment, PaymentStatus
from app.repositories.payment_reads import Page, PaymentFilters, PaymentReads, PaymentRow
from app.repositories.payments import NewPayments, PaymentRepository, UniqueViolation
from app.schemas.fields import METADATA_MAX_KEYS
from app.schemas.payment import AdminPaymentListQuery, PaymentCreate, PaymentListQuery, PaymentUpdate
from app.services.status_rules import can_transition

logger = logging.getLogger(__name__)

GATEWAY_REFERENCES = ("payment_id", "checkout_session_id")
LOCKED_AFTER_PENDING = ("amount_total", "currency")

# The versions an If-Match header accepts; None when the request has no If-Match (or `*`).
ExpectedVersions = Collection[int] | None


PaymentRecord = TypeVar("PaymentRecord", Payment, PaymentRow)


def _visible_to(payment: PaymentRecord | None, principal: Principal) -> PaymentRecord:
    # Someone else's payment is reported exactly like a missing one, so ids cannot be probed.
    if payment is None:
        raise PaymentNotFound("Payment not found")
    owner = payment["user_id"] if isinstance(payment, dict) else payment.user_id
    if not (principal.is_admin or owner == principal.user_id):
        raise PaymentNotFound("Payment not found")
    return payment


def _check_precondition(payment: Payment, expected: ExpectedVersions) -> None:
    if expected is not None and payment.version not in expected:
        raise PreconditionFailed(
            f'The payment has changed (its ETag is now "{payment.version}"); fetch it again and retry'
        )


def merge_metadata(current: dict[str, str], changes: dict[str, str]) -> dict[str, str]:
    """Stripe's rule: keys are merged, and an empty-string value removes the key."""
    merged = {**current, **changes}
    return {key: value for key, value in merged.items() if value != ""}


class PaymentCreator:
    """Records new payments, on the request's driver transaction (see NewPayments)."""

    def __init__(self, payments: NewPayments, *, request_id: str | None = None) -> None:
        self.payments = payments
        self.request_id = request_id

    async def create(self, principal: Principal, data: PaymentCreate) -> PaymentRow:
        values = data.model_dump(exclude={"user_id", "metadata"})
        values["metadata"] = merge_metadata({}, data.metadata)
        values["user_id"] = principal.user_id
        payment = await self.payments.insert_with_history(values, actor=principal.actor, request_id=self.request_id)
        if payment is None:
            raise DuplicatePayment("A payment with this payment_id or checkout_session_id already exists")
        PAYMENTS_CREATED.labels(data.provider.value, data.currency).inc()
        logger.info(
            "payment created",
            extra={"payment_id": payment["id"], "to_status": payment["payment_status"], "actor": principal.actor},
        )
        return payment


class PaymentService:
    """Changes to existing payments, on the request's session."""

    def __init__(self, session: AsyncSession, *, request_id: str | None = None) -> None:
        self.payments = PaymentRepository(session)
        self.request_id = request_id

    async def update(
        self, principal: Principal, payment_id: int, data: PaymentUpdate, expected: ExpectedVersions = None
    ) -> Payment:
        payment = _visible_to(await self.payments.get_for_update(payment_id), principal)
        _check_precondition(payment, expected)
        requested = data.changes()
        if data.metadata is not None:
            del requested["metadata"]
            metadata = merge_metadata(payment.metadata_, data.metadata)
            if len(metadata) > METADATA_MAX_KEYS:
                raise InvalidPayment(f"metadata may hold at most {METADATA_MAX_KEYS} keys after the merge")
            requested["metadata_"] = metadata
        changes = {field: value for field, value in requested.items() if getattr(payment, field) != value}
        self._check_changes_allowed(payment, changes)
        amount = data.amount_total if data.amount_total is not None else payment.amount_total
        self._check_amount(amount, data.currency or payment.currency)
        if not changes:
            return payment
        try:
            return await self.payments.update(payment.id, changes)
        except UniqueViolation as exc:
            raise DuplicatePayment("Another payment already has this payment_id or checkout_session_id") from exc

    @staticmethod
    def _check_changes_allowed(payment: Payment, changes: dict[str, Any]) -> None:
        for field in GATEWAY_REFERENCES:
            # A gateway id may be filled in once it is known, never changed or cleared afterwards.
            if field in changes and getattr(payment, field) is not None:
                raise ImmutableField(f"{field} is already set and cannot be changed")
        locked = [field for field in LOCKED_AFTER_PENDING if field in changes]
        if locked and payment.payment_status != PaymentStatus.PENDING:
            raise ImmutableField(
                f"{' and '.join(locked)} can only change while the payment is pending "
                f"(it is {payment.payment_status.value})"
            )

    @staticmethod
    def _check_amount(amount: Decimal, currency: str) -> None:
        problem = amount_problem(amount, currency)
        if problem is not None:
            raise InvalidPayment(f"amount_total {problem}")

    async def change_status(
        self, principal: Principal, payment_id: int, target: PaymentStatus, expected: ExpectedVersions = None
    ) -> Payment | PaymentRow:
        """Move a payment to `target` under a row lock, so concurrent moves are serialized."""
        payment = _visible_to(await self.payments.get_for_update(payment_id), principal)
        _check_precondition(payment, expected)
        return await self.move(payment, target, actor=principal.actor)

    async def move(
        self, payment: Payment, target: PaymentStatus, *, actor: str, event_id: str | None = None
    ) -> Payment | PaymentRow:
        """Apply the status rules to a payment the caller has locked, and record the move."""
        current = payment.payment_status
        if current == target:
            return payment
        if not can_transition(current, target):
            raise IllegalStatusTransition(f"Cannot move a payment from {current.value} to {target.value}")
        moved = await self.payments.move_with_history(
            payment.id, current, target, actor=actor, request_id=self.request_id, event_id=event_id
        )
        STATUS_TRANSITIONS.labels(current.value, target.value).inc()
        logger.info(
            "payment status changed",
            extra={
                "payment_id": payment.id,
                "from_status": current.value,
                "to_status": target.value,
                "actor": actor,
                "event_id": event_id,
            },
        )
        return moved

    async def cancel(
        self, principal: Principal, payment_id: int, expected: ExpectedVersions = None
    ) -> Payment | PaymentRow:
        return await self.change_status(principal, payment_id, PaymentStatus.CANCELED, expected)


class PaymentReader:
    """The GET side: the same ownership rules, on read-only queries."""

    def __init__(self, reads: PaymentReads) -> None:
        self.reads = reads

    async def get(self, principal: Principal, payment_id: int) -> PaymentRow:
        return _visible_to(await self.reads.get(payment_id), principal)

    async def get_by_gateway_id(self, principal: Principal, gateway_payment_id: str) -> PaymentRow:
        return _visible_to(await self.reads.get_by_gateway_id(gateway_payment_id), principal)

    async def status_history(self, principal: Principal, payment_id: int) -> list[dict[str, Any]]:
        payment = _visible_to(await self.reads.get(payment_id), principal)
        return await self.reads.status_history(payment["id"])

    async def list_for_booking(self, principal: Principal, booking_id: str) -> list[PaymentRow]:
        owner = None if principal.is_admin else principal.user_id
        return await self.reads.list_for_booking(booking_id, user_id=owner)

    async def list_own(self, principal: Principal, query: PaymentListQuery) -> Page:
        return await self._list(query, user_id=principal.user_id)

    async def list_all(self, query: AdminPaymentListQuery) -> Page:
        return await self._list(query, user_id=query.user_id)

    async def _list(self, query: PaymentListQuery, *, user_id: int | None) -> Page:
        filters = PaymentFilters(
            user_id=user_id,
            payment_status=query.payment_status,
            provider=query.provider,
            currency=query.currency,
            booking_id=query.booking_id,
            property_id=query.property_id,
            created_from=query.created_from,
            created_to=query.created_to,
            metadata=query.metadata_filter() or None,
        )
        position = query.position()
        return await self.reads.list_page(
            filters,
            limit=query.size,
            offset=0 if position is not None else (query.page - 1) * query.size,
            after=position,
            with_total=query.counts_total(),
        )
