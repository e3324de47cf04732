"""Business rules for payments: ownership, what may change, and status moves."""

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.currencies import amount_problem
from app.core.errors import (
    DuplicatePayment,
    IllegalStatusTransition,
    ImmutableField,
    InvalidPayment,
    PaymentNotFound,
)
from app.core.security import Principal
from app.models import Payment, PaymentStatus
from app.repositories.payments import PaymentFilters, PaymentRepository, UniqueViolation
from app.schemas.payment import (
    AdminPaymentListQuery,
    PaymentCreate,
    PaymentListQuery,
    PaymentUpdate,
)
from app.services.status_rules import can_transition

GATEWAY_REFERENCES = ("payment_id", "checkout_session_id")
LOCKED_AFTER_PENDING = ("amount_total", "currency")


def _visible_to(payment: Payment | None, principal: Principal) -> Payment:
    # Someone else's payment is reported exactly like a missing one, so ids cannot be probed.
    if payment is None or not (principal.is_admin or payment.user_id == principal.user_id):
        raise PaymentNotFound("Payment not found")
    return payment


class PaymentService:
    def __init__(self, session: AsyncSession) -> None:
        self.payments = PaymentRepository(session)

    async def create(self, principal: Principal, data: PaymentCreate) -> Payment:
        values = data.model_dump(exclude={"user_id"})
        values["user_id"] = principal.user_id
        payment = await self.payments.insert_unless_duplicate(values)
        if payment is None:
            raise DuplicatePayment("A payment with this payment_id or checkout_session_id already exists")
        return payment

    async def get(self, principal: Principal, payment_id: int) -> Payment:
        return _visible_to(await self.payments.get(payment_id), principal)

    async def get_by_gateway_id(self, principal: Principal, gateway_payment_id: str) -> Payment:
        return _visible_to(await self.payments.get_by_gateway_id(gateway_payment_id), principal)

    async def list_for_booking(self, principal: Principal, booking_id: str) -> list[Payment]:
        owner = None if principal.is_admin else principal.user_id
        return await self.payments.list_for_booking(booking_id, user_id=owner)

    async def list_own(self, principal: Principal, query: PaymentListQuery) -> tuple[list[Payment], int]:
        return await self._list(query, user_id=principal.user_id)

    async def list_all(self, query: AdminPaymentListQuery) -> tuple[list[Payment], int]:
        return await self._list(query, user_id=query.user_id)

    async def _list(self, query: PaymentListQuery, *, user_id: int | None) -> tuple[list[Payment], int]:
        filters = PaymentFilters(
            user_id=user_id,
            payment_status=query.payment_status,
            provider=query.provider,
            currency=query.currency,
            booking_id=query.booking_id,
            property_id=query.property_id,
            created_from=query.created_from,
            created_to=query.created_to,
        )
        return await self.payments.list_page(filters, offset=(query.page - 1) * query.size, limit=query.size)

    async def update(self, principal: Principal, payment_id: int, data: PaymentUpdate) -> Payment:
        payment = _visible_to(await self.payments.get(payment_id, for_update=True), principal)
        changes = data.changes()
        for field in GATEWAY_REFERENCES:
            # A gateway id may be filled in once it is known, never changed or cleared afterwards.
            if field in changes and getattr(payment, field) not in (None, changes[field]):
                raise ImmutableField(f"{field} is already set and cannot be changed")
        money_changes = [field for field in LOCKED_AFTER_PENDING if field in changes]
        if money_changes and payment.payment_status != PaymentStatus.PENDING:
            changed = [f for f in money_changes if changes[f] != getattr(payment, f)]
            if changed:
                raise ImmutableField(
                    f"{' and '.join(changed)} can only change while the payment is pending "
                    f"(it is {payment.payment_status.value})"
                )
        amount = data.amount_total if data.amount_total is not None else payment.amount_total
        self._check_amount(amount, data.currency or payment.currency)
        if not changes:
            return payment
        try:
            return await self.payments.update(payment.id, changes)
        except UniqueViolation as exc:
            raise DuplicatePayment("Another payment already has this payment_id or checkout_session_id") from exc

    @staticmethod
    def _check_amount(amount: Decimal, currency: str) -> None:
        problem = amount_problem(amount, currency)
        if problem is not None:
            raise InvalidPayment(f"amount_total {problem}")

    async def change_status(self, principal: Principal, payment_id: int, target: PaymentStatus) -> Payment:
        """Move a payment to `target` under a row lock, so concurrent moves are serialized."""
        payment = _visible_to(await self.payments.get(payment_id, for_update=True), principal)
        current = payment.payment_status
        if current == target:
            return payment
        if not can_transition(current, target):
            raise IllegalStatusTransition(f"Cannot move a payment from {current.value} to {target.value}")
        return await self.payments.update(payment.id, {"payment_status": target})

    async def cancel(self, principal: Principal, payment_id: int) -> Payment:
        return await self.change_status(principal, payment_id, PaymentStatus.CANCELED)
