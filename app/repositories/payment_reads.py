"""Read-only queries for GET requests, on plain pooled connections in autocommit.

This is the hot path, so it skips the ORM. The statements are SQLAlchemy Core, built once at import.
The single-row lookups are compiled once more, to the driver's SQL, and run on asyncpg directly
(see DriverQuery); the list queries, whose shape depends on the filters, run through SQLAlchemy.
Rows come back as plain dicts. No HTTP, no authorization: callers pass the owner."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Executable, bindparam, func, select, tuple_

from app.core.database import ConnectionFactory, DriverConnectionFactory
from app.core.pagination import Keyset
from app.models import Payment, PaymentProvider, PaymentStatus, PaymentStatusHistory
from app.repositories.driver import DriverQuery

PaymentRow = dict[str, Any]

_payments = Payment.__table__
_history = PaymentStatusHistory.__table__
_SELECT_PAYMENTS = select(*_payments.columns)
_BY_ID = _SELECT_PAYMENTS.where(_payments.c.id == bindparam("id"))
_BY_GATEWAY_ID = _SELECT_PAYMENTS.where(_payments.c.payment_id == bindparam("payment_id"))
_NEWEST_FIRST = (_payments.c.created_at.desc(), _payments.c.id.desc())
_HISTORY = select(*_history.columns).where(_history.c.payment_id == bindparam("payment_id")).order_by(_history.c.id)


_DRIVER_BY_ID = DriverQuery.of(_BY_ID)
_DRIVER_BY_GATEWAY_ID = DriverQuery.of(_BY_GATEWAY_ID)
_DRIVER_HISTORY = DriverQuery.of(_HISTORY)


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
    metadata: dict[str, str] | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        c = _payments.c
        equals: list[tuple[Any, object]] = [
            (c.user_id, self.user_id),
            (c.payment_status, self.payment_status),
            (c.provider, self.provider),
            (c.currency, self.currency),
            (c.booking_id, self.booking_id),
            (c.property_id, self.property_id),
        ]
        conditions: list[ColumnElement[bool]] = [col == value for col, value in equals if value is not None]
        if self.created_from is not None:
            conditions.append(c.created_at >= self.created_from)
        if self.created_to is not None:
            conditions.append(c.created_at <= self.created_to)
        if self.metadata:
            conditions.append(c.metadata.contains(self.metadata))  # JSONB @>
        return conditions


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[PaymentRow]
    total: int | None
    has_more: bool


class PaymentReads:
    """Each query takes a pooled connection for just that statement (autocommit), so a request holds
    no connection while it is not querying, and no per-request connection set-up is needed."""

    def __init__(self, connect: ConnectionFactory, connect_driver: DriverConnectionFactory) -> None:
        self.connect = connect
        self.connect_driver = connect_driver

    async def _rows(self, statement: Executable) -> list[dict[str, Any]]:
        async with self.connect() as connection:
            return [dict(row) for row in (await connection.execute(statement)).mappings()]

    async def _driver_rows(self, query: DriverQuery, **values: Any) -> list[dict[str, Any]]:
        async with self.connect_driver() as connection:
            return [dict(record) for record in await connection.fetch(query.sql, *query.arguments(values))]

    async def get(self, payment_id: int) -> PaymentRow | None:
        return next(iter(await self._driver_rows(_DRIVER_BY_ID, id=payment_id)), None)

    async def get_by_gateway_id(self, gateway_payment_id: str) -> PaymentRow | None:
        return next(iter(await self._driver_rows(_DRIVER_BY_GATEWAY_ID, payment_id=gateway_payment_id)), None)

    async def status_history(self, payment_id: int) -> list[dict[str, Any]]:
        return await self._driver_rows(_DRIVER_HISTORY, payment_id=payment_id)

    async def list_for_booking(self, booking_id: str, *, user_id: int | None) -> list[PaymentRow]:
        filters = PaymentFilters(booking_id=booking_id, user_id=user_id)
        return await self._rows(
            _SELECT_PAYMENTS.where(*filters.conditions()).order_by(_payments.c.created_at, _payments.c.id)
        )

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
            position = tuple_(_payments.c.created_at, _payments.c.id) < tuple_(after.created_at, after.id)
            page_conditions.append(position)
        statement = (
            _SELECT_PAYMENTS.where(*page_conditions)
            .order_by(*_NEWEST_FIRST)
            .offset(offset)
            .limit(limit + 1)  # one more than asked tells whether there is a next page
        )
        rows = await self._rows(statement)
        total = None
        if with_total:
            count = select(func.count().label("total")).select_from(_payments).where(*conditions)
            total = int((await self._rows(count))[0]["total"])
        return Page(rows=rows[:limit], total=total, has_more=len(rows) > limit)
