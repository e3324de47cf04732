"""Business rules for payments: ownership, what may change, status moves and their history."""

import logging
from typing import Any, Protocol

from app.core.currencies import amount_problem
from app.core.database import UnitOfWork
from app.core.errors import (
    KEY_TAKEN_OVER,
    DuplicatePayment,
    Forbidden,
    IdempotencyKeyInFlight,
    IllegalStatusTransition,
    ImmutableField,
    InvalidPayment,
)
from app.core.metrics import EVENTS_WRITTEN, PAYMENTS_CREATED
from app.core.security import Principal
from app.models import PaymentStatus
from app.repositories.events import Events
from app.repositories.idempotency import KeyCompletion
from app.repositories.payments import KeyTakenOver, Page, PaymentFilters, Payments, UniqueViolation
from app.schemas.fields import METADATA_MAX_KEYS
from app.schemas.payment import (
    AdminPaymentListQuery,
    BookingPaymentQuery,
    PaymentCreate,
    PaymentListQuery,
    PaymentRecord,
    PaymentUpdate,
    StatusChange,
)
from app.services.access import (
    OUTCOMES_ARE_FOR_BACKENDS,
    ExpectedVersions,
    check_precondition,
    check_records_outcomes,
    visible_to,
)
from app.services.moves import record_move
from app.services.refunds import RefundService
from app.services.status_rules import ALLOWED_TRANSITIONS

logger = logging.getLogger(__name__)

GATEWAY_REFERENCES = ("payment_id", "checkout_session_id")
LOCKED_AFTER_PENDING = ("amount_total", "currency")
# Moving a payment to another booking or property once it is under way is a backend's decision.
RELINKED_AFTER_PENDING = ("booking_id", "property_id")
# For each target status, the statuses a payment may move to it from.
_MOVES_TO = {target: [s for s in PaymentStatus if target in ALLOWED_TRANSITIONS[s]] for target in PaymentStatus}


class NewPaymentKey(Protocol):
    """An Idempotency-Key claimed for a create: the payment's id and time were reserved with the
    claim, so the response can be rendered before the insert and stored in the same statement."""

    def reserved(self) -> tuple[int, Any]:
        """The reserved id and creation time."""
        ...

    def completion(self, payment: PaymentRecord) -> KeyCompletion:
        """The key's stored response for `payment`."""
        ...


def _check_may_move(principal: Principal, target: PaymentStatus) -> None:
    # End users may only cancel their own pending payments.
    if target != PaymentStatus.CANCELED:
        check_records_outcomes(principal, f"Moving a payment to {target.value}")


def merge_metadata(current: dict[str, str], changes: dict[str, str]) -> dict[str, str]:
    """Stripe's rule: keys are merged, and an empty-string value removes the key."""
    merged = {**current, **changes}
    return {key: value for key, value in merged.items() if value != ""}


class PaymentService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.payments = Payments(uow)
        self.request_id = uow.request_id

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, principal: Principal, payment_id: int) -> PaymentRecord:
        return visible_to(await self.payments.get(payment_id), principal)

    async def get_by_gateway_id(self, principal: Principal, gateway_payment_id: str) -> PaymentRecord:
        return visible_to(await self.payments.get_by_gateway_id(gateway_payment_id), principal)

    async def history(self, principal: Principal, payment_id: int) -> list[StatusChange]:
        payment = visible_to(await self.payments.get(payment_id), principal)
        return await self.payments.history(payment.id)

    async def list_for_booking(self, principal: Principal, booking_id: str, query: BookingPaymentQuery) -> Page:
        owner = None if principal.is_trusted else principal.user_id
        return await self.payments.list_for_booking(booking_id, user_id=owner, limit=query.size, after=query.position())

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
        return await self.payments.list_page(
            filters,
            limit=query.size,
            offset=0 if position is not None else (query.page - 1) * query.size,
            after=position,
            with_total=query.counts_total(),
        )

    # -- writes --------------------------------------------------------------------------------

    async def create(
        self, principal: Principal, data: PaymentCreate, key: NewPaymentKey | None = None
    ) -> PaymentRecord:
        """Record a new payment owned by the caller, with its creation in the history: one
        statement, which with an Idempotency-Key also stores the key's response."""
        if data.payment_status != PaymentStatus.PENDING and not principal.records_outcomes:
            raise Forbidden(
                f"Creating a payment as {data.payment_status.value}: {OUTCOMES_ARE_FOR_BACKENDS} do that; "
                "create it as pending"
            )
        values = data.model_dump(exclude={"user_id", "metadata"})
        values["metadata"] = merge_metadata({}, data.metadata)
        values["user_id"] = principal.user_id
        if key is None:
            payment = await self.payments.insert(values, actor=principal.actor, request_id=self.request_id)
        else:
            payment_id, created_at = key.reserved()
            new = PaymentRecord.model_validate(
                {**values, "id": payment_id, "version": 1, "created_at": created_at, "updated_at": created_at}
            )
            try:
                payment = await self.payments.insert_completing_key(
                    new, key.completion(new), actor=principal.actor, request_id=self.request_id
                )
            except KeyTakenOver as taken_over:
                raise IdempotencyKeyInFlight(KEY_TAKEN_OVER) from taken_over
        if payment is None:
            raise DuplicatePayment("A payment with this payment_id or checkout_session_id already exists")
        PAYMENTS_CREATED.labels(payment.provider.value, payment.currency).inc()
        EVENTS_WRITTEN.labels("payment.created").inc()
        logger.info(
            "payment created",
            extra={"payment_id": payment.id, "to_status": payment.payment_status.value, "actor": principal.actor},
        )
        return payment

    async def update(
        self, principal: Principal, payment_id: int, data: PaymentUpdate, expected: ExpectedVersions = None
    ) -> PaymentRecord:
        async with self.uow.transaction():
            payment = visible_to(await self.payments.get(payment_id, locked=True), principal)
            check_precondition(payment, expected)
            changes = self._changes(payment, data)
            self._check_may_relink(principal, payment, changes)
            if not changes:
                return payment
            try:
                updated = await self.payments.update(payment, changes)
            except UniqueViolation as exc:
                raise DuplicatePayment("Another payment already has this payment_id or checkout_session_id") from exc
            await Events(self.uow).of_payment(updated.id, "payment.updated", actor=principal.actor)
            return updated

    def _changes(self, payment: PaymentRecord, data: PaymentUpdate) -> dict[str, Any]:
        """The fields that `data` changes, once checked against the stored payment."""
        requested = data.changes()
        if data.metadata is not None:
            requested["metadata"] = metadata = merge_metadata(payment.metadata, data.metadata)
            if len(metadata) > METADATA_MAX_KEYS:
                raise InvalidPayment("metadata", f"may hold at most {METADATA_MAX_KEYS} keys after the merge")
        changes = {field: value for field, value in requested.items() if getattr(payment, field) != value}
        self._check_changes_allowed(payment, changes)
        amount = data.amount_total if data.amount_total is not None else payment.amount_total
        problem = amount_problem(amount, data.currency or payment.currency)
        if problem is not None:
            raise InvalidPayment("amount_total", problem)
        return changes

    @staticmethod
    def _check_may_relink(principal: Principal, payment: PaymentRecord, changes: dict[str, Any]) -> None:
        relinked = [field for field in RELINKED_AFTER_PENDING if field in changes]
        if relinked and payment.payment_status != PaymentStatus.PENDING and not principal.records_outcomes:
            raise Forbidden(
                f"Changing {' and '.join(relinked)} of a {payment.payment_status.value} payment: "
                f"{OUTCOMES_ARE_FOR_BACKENDS} do that"
            )

    @staticmethod
    def _check_changes_allowed(payment: PaymentRecord, changes: dict[str, Any]) -> None:
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

    async def change_status(
        self, principal: Principal, payment_id: int, target: PaymentStatus, expected: ExpectedVersions = None
    ) -> PaymentRecord:
        """Move a payment to `target`: one statement that locks the row, checks who may, the
        If-Match version and the status rules, moves it and records the move. Concurrent moves of
        one payment are serialized by the row lock, each checked against the status the previous
        one left. Refunded is a refund of everything still refundable (see RefundService)."""
        if target is PaymentStatus.REFUNDED:
            return await RefundService(self.uow).refund_remaining(principal, payment_id, expected)
        _check_may_move(principal, target)
        from_statuses = _MOVES_TO[target] if principal.records_outcomes else [PaymentStatus.PENDING]
        move = await self.payments.move(
            payment_id,
            target,
            from_statuses=from_statuses,
            owner=None if principal.is_trusted else principal.user_id,
            versions=expected,
            actor=principal.actor,
            request_id=self.request_id,
        )
        payment = visible_to(move.payment if move else None, principal)
        if move is not None and move.moved:
            record_move(move, target, principal.actor, None)
            return payment
        # Not moved: the same checks, in the order the statement applied them, say why.
        check_precondition(payment, expected)
        if payment.payment_status == target:
            return payment  # already there: a no-op
        if target in ALLOWED_TRANSITIONS[payment.payment_status]:  # allowed, but not for this caller
            raise Forbidden(f"Canceling a {payment.payment_status.value} payment: {OUTCOMES_ARE_FOR_BACKENDS} do that")
        raise IllegalStatusTransition(f"Cannot move a payment from {payment.payment_status.value} to {target.value}")

    async def cancel(self, principal: Principal, payment_id: int, expected: ExpectedVersions = None) -> PaymentRecord:
        return await self.change_status(principal, payment_id, PaymentStatus.CANCELED, expected)
