"""Read-only queries for GET requests, on plain pooled connections in autocommit.

This is the hot path, so it skips the ORM and SQLAlchemy's execution layer: the statements are
SQLAlchemy Core, compiled once to the driver's SQL and run on asyncpg directly (see DriverQuery); a
list query is compiled once per combination of filters. Rows come back as plain dicts. No HTTP, no
authorization: callers pass the owner."""

from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Integer, bindparam, func, select, tuple_

from app.core.database import DriverConnectionFactory
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

    def bound_values(self) -> dict[str, Any]:
        """The filters in use, by name (an empty metadata filter is none)."""
        values = {name: value for name in _FILTER_NAMES if (value := getattr(self, name)) is not None}
        if not self.metadata:
            values.pop("metadata", None)
        return values


_FILTER_NAMES = tuple(field.name for field in fields(PaymentFilters))


def _condition(name: str) -> ColumnElement[bool]:
    """The WHERE condition of one filter, on a bound parameter named after it."""
    c = _payments.c
    if name == "created_from":
        return c.created_at >= bindparam(name, type_=c.created_at.type)
    if name == "created_to":
        return c.created_at <= bindparam(name, type_=c.created_at.type)
    if name == "metadata":
        return c.metadata.contains(bindparam(name, type_=c.metadata.type))  # JSONB @>
    return c[name] == bindparam(name, type_=c[name].type)


_AFTER = tuple_(_payments.c.created_at, _payments.c.id) < tuple_(
    bindparam("after_created_at", type_=_payments.c.created_at.type), bindparam("after_id", type_=_payments.c.id.type)
)


@lru_cache(maxsize=512)
def _page_queries(filters: frozenset[str], keyset: bool) -> tuple[DriverQuery, DriverQuery]:
    """The page and count statements for one combination of filters, compiled once: a request only
    binds its values. The keyset condition is served by the (user_id, created_at, id) index."""
    conditions = [_condition(name) for name in _FILTER_NAMES if name in filters]
    page = (
        _SELECT_PAYMENTS.where(*conditions, *([_AFTER] if keyset else []))
        .order_by(*_NEWEST_FIRST)
        .offset(bindparam("offset", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
    )
    count = select(func.count().label("total")).select_from(_payments).where(*conditions)
    return DriverQuery.of(page), DriverQuery.of(count)


def _for_booking(owner_only: bool) -> DriverQuery:
    filters = ("user_id", "booking_id") if owner_only else ("booking_id",)
    oldest_first = (_payments.c.created_at, _payments.c.id)
    return DriverQuery.of(_SELECT_PAYMENTS.where(*map(_condition, filters)).order_by(*oldest_first))


_FOR_BOOKING = {owner_only: _for_booking(owner_only) for owner_only in (True, False)}


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[PaymentRow]
    total: int | None
    has_more: bool


class PaymentReads:
    """Each call takes a pooled connection for just its statements (autocommit), so a request holds
    no connection while it is not querying, and no per-request connection set-up is needed."""

    def __init__(self, connect_driver: DriverConnectionFactory) -> None:
        self.connect_driver = connect_driver

    async def _driver_rows(self, query: DriverQuery, **values: Any) -> list[dict[str, Any]]:
        async with self.connect_driver() as connection:
            return await query.fetch(connection, **values)

    async def _driver_row(self, query: DriverQuery, **values: Any) -> dict[str, Any] | None:
        async with self.connect_driver() as connection:
            return await query.fetchrow(connection, **values)

    async def get(self, payment_id: int) -> PaymentRow | None:
        return await self._driver_row(_DRIVER_BY_ID, id=payment_id)

    async def get_by_gateway_id(self, gateway_payment_id: str) -> PaymentRow | None:
        return await self._driver_row(_DRIVER_BY_GATEWAY_ID, payment_id=gateway_payment_id)

    async def status_history(self, payment_id: int) -> list[dict[str, Any]]:
        return await self._driver_rows(_DRIVER_HISTORY, payment_id=payment_id)

    async def list_for_booking(self, booking_id: str, *, user_id: int | None) -> list[PaymentRow]:
        return await self._driver_rows(_FOR_BOOKING[user_id is not None], booking_id=booking_id, user_id=user_id)

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
        values = filters.bound_values()
        page_query, count_query = _page_queries(frozenset(values), after is not None)
        # One more row than asked tells whether there is a next page.
        page_values = {**values, "offset": offset, "limit": limit + 1}
        if after is not None:
            page_values |= {"after_created_at": after.created_at, "after_id": after.id}
        async with self.connect_driver() as connection:
            rows = await page_query.fetch(connection, **page_values)
            total = None
            if with_total:
                total = int(await count_query.fetchval(connection, **values))
        return Page(rows=rows[:limit], total=total, has_more=len(rows) > limit)
