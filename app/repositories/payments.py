"""Changes to the payments table: new payments on the request's driver transaction, the rest on
its session (ORM objects, row locks). No HTTP, no authorization. Reads for GET requests are in
payment_reads.py."""

from typing import Any, cast

from sqlalchemy import Result, Select, String, Table, bindparam, func, null, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import DriverTransaction
from app.models import Payment, PaymentStatus, PaymentStatusHistory
from app.repositories.driver import DriverQuery

_payments = cast(Table, Payment.__table__)
_history = cast(Table, PaymentStatusHistory.__table__)
_HISTORY_COLUMNS = ["payment_id", "from_status", "to_status", "actor", "request_id"]

UNIQUE_VIOLATION = "23505"
UNIQUE_COLUMNS = frozenset({"payment_id", "checkout_session_id"})


# Columns a new payment is inserted with (the rest have server defaults).
_CREATE_COLUMNS = (
    "payment_id", "checkout_session_id", "payment_method_id", "payment_method_types", "payment_status",
    "provider", "currency", "amount_total", "customer_id", "customer_email", "booking_id", "property_id",
    "description", "metadata", "user_id",
)  # fmt: skip


def _insert_with_history_statement() -> Select[tuple[Any, ...]]:
    """INSERT the payment (unless its gateway ids are taken) and its creation history row, as one
    statement; built once, run with bound parameters (building it per request cost ~0.5 ms)."""
    values = {name: bindparam(name, type_=_payments.c[name].type) for name in _CREATE_COLUMNS}
    inserted = insert(_payments).values(values).on_conflict_do_nothing().returning(*_payments.columns).cte("inserted")
    creation = select(
        inserted.c.id,
        null(),
        inserted.c.payment_status,
        bindparam("actor", type_=String),
        bindparam("request_id", type_=String),
    )
    recorded = insert(_history).from_select(_HISTORY_COLUMNS, creation).cte("recorded")
    return select(*inserted.c).add_cte(recorded)


def _move_with_history_statement() -> Select[tuple[Any, ...]]:
    """UPDATE a locked payment's status (version + 1) and append its history row, as one statement."""
    moved = (
        update(_payments)
        .where(_payments.c.id == bindparam("row_id"))  # not "payment_id": that names a column here
        .values(
            payment_status=bindparam("to_status", type_=_payments.c.payment_status.type),
            version=_payments.c.version + 1,
            updated_at=func.now(),
        )
        .returning(*_payments.columns)
        .cte("moved")
    )
    entry = select(
        moved.c.id,
        bindparam("from_status", type_=_history.c.from_status.type),
        moved.c.payment_status,
        bindparam("actor", type_=String),
        bindparam("request_id", type_=String),
        bindparam("event_id", type_=String),
    )
    recorded = insert(_history).from_select([*_HISTORY_COLUMNS, "event_id"], entry).cte("recorded")
    return select(*moved.c).add_cte(recorded)


_INSERT_WITH_HISTORY = DriverQuery.of(_insert_with_history_statement())
_MOVE_WITH_HISTORY = _move_with_history_statement()


class UniqueViolation(Exception):
    """An insert or update collided with another row's unique gateway id."""


class NewPayments:
    """Inserts on the request's driver transaction: the create route is the busiest write, and on
    it SQLAlchemy's session and execution layer cost about as much CPU as the rest of the request."""

    def __init__(self, transaction: DriverTransaction) -> None:
        self.transaction = transaction

    async def insert_with_history(
        self, values: dict[str, Any], *, actor: str, request_id: str | None
    ) -> dict[str, Any] | None:
        """Insert a payment and its creation history row (null -> its status) in one statement; None
        when its payment_id or checkout_session_id is already taken (then nothing is written)."""
        connection = await self.transaction.connection()
        return await _INSERT_WITH_HISTORY.fetchrow(connection, **values, actor=actor, request_id=request_id)


class PaymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_for_update(self, payment_id: int) -> Payment | None:
        """The ORM object, locked until the transaction ends, for changing it."""
        statement = select(Payment).where(Payment.id == payment_id).with_for_update()
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

    async def move_with_history(
        self,
        payment_id: int,
        from_status: PaymentStatus,
        to_status: PaymentStatus,
        *,
        actor: str,
        request_id: str | None,
        event_id: str | None,
    ) -> dict[str, Any]:
        """Set a locked payment's status (bumping its version) and append the history row, in one
        statement; returns the payment as stored."""
        parameters = {
            "row_id": payment_id,
            "from_status": from_status,
            "to_status": to_status,
            "actor": actor,
            "request_id": request_id,
            "event_id": event_id,
        }
        result: Result[Any] = await self.session.execute(_MOVE_WITH_HISTORY, parameters)
        return dict(result.mappings().one())

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
