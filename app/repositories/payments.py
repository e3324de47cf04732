"""Changes to the payments table, on the request's session (ORM objects, row locks). No HTTP, no
authorization. Reads for GET requests are in payment_reads.py."""

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment

UNIQUE_VIOLATION = "23505"
UNIQUE_COLUMNS = frozenset({"payment_id", "checkout_session_id"})


class UniqueViolation(Exception):
    """An insert or update collided with another row's unique gateway id."""


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
