"""Queries on the payments table. No HTTP, no authorization: callers pass the owner to filter by."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import Keyset
from app.models import Payment, PaymentProvider, PaymentStatus

UNIQUE_VIOLATION = "23505"
UNIQUE_COLUMNS = frozenset({"payment_id", "checkout_session_id"})


# Reads return plain rows (attribute access like the ORM object, without the identity map and
# instance state the ORM would build for each one); writes work on ORM objects.
PaymentRow = Row[Any]
_ROW_COLUMNS = tuple(Payment.__table__.columns)


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[PaymentRow]
    total: int | None
    has_more: bool


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
        """The ORM object, for changing it (`for_update` locks the row until the transaction ends)."""
        statement = select(Payment).where(Payment.id == payment_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.scalars(statement)).one_or_none()

    async def get_row(self, payment_id: int) -> PaymentRow | None:
        return (await self.session.execute(select(*_ROW_COLUMNS).where(Payment.id == payment_id))).first()

    async def get_row_by_gateway_id(self, gateway_payment_id: str) -> PaymentRow | None:
        statement = select(*_ROW_COLUMNS).where(Payment.payment_id == gateway_payment_id)
        return (await self.session.execute(statement)).first()

    async def find_for_provider_event(
        self, *, checkout_session_id: str | None, payment_intent_id: str | None
    ) -> Payment | None:
        """The payment a provider event is about, locked: by checkout session first, then by the
        gateway payment id."""
        lookups = ((Payment.checkout_session_id, checkout_session_id), (Payment.payment_id, payment_intent_id))
        for column, value in lookups:
            if value is not None:
                statement = select(Payment).where(column == value).with_for_update()
                payment = (await self.session.scalars(statement)).one_or_none()
                if payment is not None:
                    return payment
        return None

    async def list_for_booking(self, booking_id: str, *, user_id: int | None) -> list[PaymentRow]:
        filters = PaymentFilters(booking_id=booking_id, user_id=user_id)
        statement = select(*_ROW_COLUMNS).where(*filters.conditions()).order_by(Payment.created_at, Payment.id)
        return list((await self.session.execute(statement)).all())

    async def list_page(
        self,
        filters: PaymentFilters,
        *,
        limit: int,
        offset: int = 0,
        after: Keyset | None = None,
        with_total: bool = True,
    ) -> Page:
        """One page newest first: after `offset` rows, or after the keyset position `after` (which
        an index on (..., created_at, id) serves directly, so every page costs the same)."""
        conditions = filters.conditions()
        page_conditions = list(conditions)
        if after is not None:
            page_conditions.append(tuple_(Payment.created_at, Payment.id) < tuple_(after.created_at, after.id))
        statement = (
            select(*_ROW_COLUMNS)
            .where(*page_conditions)
            .order_by(Payment.created_at.desc(), Payment.id.desc())
            .offset(offset)
            .limit(limit + 1)  # one more than asked tells whether there is a next page
        )
        rows = list((await self.session.execute(statement)).all())
        total = None
        if with_total:
            count = select(func.count()).select_from(Payment).where(*conditions)
            total = int(await self.session.scalar(count) or 0)
        return Page(rows=rows[:limit], total=total, has_more=len(rows) > limit)

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
