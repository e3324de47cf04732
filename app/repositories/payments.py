"""Queries on the payments table. No HTTP, no authorization: callers pass the owner to filter by."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, PaymentProvider, PaymentStatus

UNIQUE_VIOLATION = "23505"
UNIQUE_COLUMNS = frozenset({"payment_id", "checkout_session_id"})


class UniqueViolation(Exception):
    """An insert or update collided with another row's unique gateway id."""


@dataclass(frozen=True, slots=True)
class PaymentFilters:
    user_id: int | None = None
    payment_status: PaymentStatus | None = None
    provider: PaymentProvider | None = None
    currency: str | None = None
    booking_id: str | None = None
    property_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        equals: list[tuple[Any, object]] = [
            (Payment.user_id, self.user_id),
            (Payment.payment_status, self.payment_status),
            (Payment.provider, self.provider),
            (Payment.currency, self.currency),
            (Payment.booking_id, self.booking_id),
            (Payment.property_id, self.property_id),
        ]
        conditions: list[ColumnElement[bool]] = [column == value for column, value in equals if value is not None]
        if self.created_from is not None:
            conditions.append(Payment.created_at >= self.created_from)
        if self.created_to is not None:
            conditions.append(Payment.created_at <= self.created_to)
        return conditions


class PaymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_unless_duplicate(self, values: dict[str, Any]) -> Payment | None:
        """Insert a payment; None when its payment_id or checkout_session_id is already taken."""
        statement = insert(Payment).values(**values).on_conflict_do_nothing().returning(Payment)
        return (await self.session.scalars(statement)).one_or_none()

    async def get(self, payment_id: int, *, for_update: bool = False) -> Payment | None:
        statement = select(Payment).where(Payment.id == payment_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.scalars(statement)).one_or_none()

    async def find_for_provider_event(
        self, *, checkout_session_id: str | None, payment_intent_id: str | None
    ) -> Payment | None:
        """The payment a provider event is about, locked: by checkout session first, then by the
        gateway payment id."""
        for column, value in (
            (Payment.checkout_session_id, checkout_session_id),
            (Payment.payment_id, payment_intent_id),
        ):
            if value is not None:
                statement = select(Payment).where(column == value).with_for_update()
                payment = (await self.session.scalars(statement)).one_or_none()
                if payment is not None:
                    return payment
        return None

    async def get_by_gateway_id(self, gateway_payment_id: str) -> Payment | None:
        statement = select(Payment).where(Payment.payment_id == gateway_payment_id)
        return (await self.session.scalars(statement)).one_or_none()

    async def list_for_booking(self, booking_id: str, *, user_id: int | None) -> list[Payment]:
        filters = PaymentFilters(booking_id=booking_id, user_id=user_id)
        statement = select(Payment).where(*filters.conditions()).order_by(Payment.created_at, Payment.id)
        return list(await self.session.scalars(statement))

    async def list_page(self, filters: PaymentFilters, *, offset: int, limit: int) -> tuple[list[Payment], int]:
        """One page, newest first, and the number of rows matching the filters."""
        conditions = filters.conditions()
        page = (
            select(Payment)
            .where(*conditions)
            .order_by(Payment.created_at.desc(), Payment.id.desc())
            .offset(offset)
            .limit(limit)
        )
        items = list(await self.session.scalars(page))
        total = await self.session.scalar(select(func.count()).select_from(Payment).where(*conditions))
        return items, total or 0

    async def update(self, payment_id: int, values: dict[str, Any]) -> Payment:
        """Apply `values` to one payment, bump its version, and return it as stored. A collision on a unique gateway id
        raises UniqueViolation and leaves the session usable (the UPDATE runs in a savepoint)."""
        statement = (
            update(Payment)
            .where(Payment.id == payment_id)
            .values(**values, version=Payment.version + 1, updated_at=func.now())
            .returning(Payment)
            .execution_options(populate_existing=True)
        )
        if not values.keys() & UNIQUE_COLUMNS:
            return (await self.session.scalars(statement)).one()
        try:
            async with self.session.begin_nested():
                return (await self.session.scalars(statement)).one()
        except IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) == UNIQUE_VIOLATION:
                raise UniqueViolation(str(exc.orig)) from exc
            raise
