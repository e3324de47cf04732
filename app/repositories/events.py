"""Statements on the outbox (events). An event row is written by the statement or transaction of
the change it reports: as a CTE of the hot statements (create, status move), or by event_of_payment
/ event_of_refund inside a transaction. Events are read in `position` order, which position_new()
gives, under an advisory lock, only to committed events (see app/models/event.py)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Interval,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy import (
    cast as cast_,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import CTE, FromClause

from app.core.database import Statement, UnitOfWork
from app.core.metrics import EVENTS_WRITTEN
from app.models import Event, Payment, Refund

_events = cast(Table, Event.__table__)
_payments = cast(Table, Payment.__table__)
_refunds = cast(Table, Refund.__table__)
_COLUMNS = ["type", "payment_id", "refund_id", "snapshot", "previous_status", "actor", "request_id", "detail"]

# Advisory lock keys (any two constants no other code of the database uses).
POSITION_LOCK = 8_240_531_001
PUBLISH_LOCK = 8_240_531_002


def _snapshot(source: FromClause) -> ColumnElement[str]:
    """The source's row as JSON text: row_to_json keeps NUMERIC exact, unlike a float."""
    return func.row_to_json(literal_column(cast(Any, source).name)).cast(Text)


def event_recorded(
    source: FromClause,
    event_type: ColumnElement[str],
    *,
    previous_status: ColumnElement[Any] | None = None,
    name: str = "event",
) -> CTE:
    """A CTE inserting one event per row of `source` (payments' columns), with the statement's
    `actor` and `request_id` parameters."""
    columns = cast(Any, source).c
    rows = select(
        event_type,
        columns.id,
        null(),
        _snapshot(source),
        previous_status.cast(String) if previous_status is not None else null(),
        bindparam("actor", String),
        bindparam("request_id", String),
        null(),
    )
    return insert(_events).from_select(_COLUMNS, rows).cte(name)


def _event_of(table: Table, *, refund: bool) -> Statement:
    key: Any = bindparam("row_id", BigInteger)
    rows = select(
        bindparam("event_type", String),
        table.c.payment_id if refund else table.c.id,
        table.c.id if refund else null(),
        _snapshot(table),
        bindparam("previous_status", String),
        bindparam("actor", String),
        bindparam("request_id", String),
        bindparam("detail", String),
    ).where(table.c.id == key)
    statement: Insert = insert(_events).from_select(_COLUMNS, rows)
    return Statement.of(statement)


_OF_PAYMENT = _event_of(_payments, refund=False)
_OF_REFUND = _event_of(_refunds, refund=True)
_LOCK = Statement.of(select(func.pg_advisory_xact_lock(bindparam("lock_key", BigInteger))))
# The publish lock, and for this transaction an idle timeout: a relay frozen (paused, cut off) while
# it holds the lock has its session ended by PostgreSQL, so a standby relay can take over.
_TRY_LOCK = Statement.of(
    select(
        func.pg_try_advisory_xact_lock(bindparam("lock_key", BigInteger)),
        func.set_config("idle_in_transaction_session_timeout", bindparam("idle_timeout", String), True),
    )
)


def _position_statement() -> Statement:
    """Number the committed events that have no position yet, in id order, after the highest
    position given. Run under POSITION_LOCK, in a statement after the one taking it (so its snapshot
    sees every position given before)."""
    todo = (
        select(_events.c.id, func.row_number().over(order_by=_events.c.id).label("n"))
        .where(_events.c.position.is_(None))
        .order_by(_events.c.id)
        .limit(bindparam("batch_size"))
        .cte("todo")
    )
    base = select(func.coalesce(func.max(_events.c.position), 0).label("p")).cte("base")
    return Statement.of(
        update(_events)
        .where(_events.c.id == todo.c.id)
        .values(position=base.c.p + todo.c.n)
        .add_cte(todo)
        .add_cte(base)
    )


_POSITION = _position_statement()
_UNPUBLISHED = Statement.of(
    select(*_events.columns)
    .where(_events.c.position.is_not(None), _events.c.published_at.is_(None))
    .order_by(_events.c.position)
    .limit(bindparam("batch_size"))
)
_MARK_PUBLISHED = Statement.of(
    update(_events).where(_events.c.id == func.any(bindparam("ids", ARRAY(BigInteger)))).values(published_at=func.now())
)


def _oldest_unpublished_age() -> Statement:
    """Seconds since the oldest unpublished event was written: the first not positioned yet (by id)
    or the first positioned and unpublished (by position), whichever is older; both index scans."""
    unpositioned = select(_events.c.created_at).where(_events.c.position.is_(None)).order_by(_events.c.id).limit(1)
    unpublished = (
        select(_events.c.created_at)
        .where(_events.c.position.is_not(None), _events.c.published_at.is_(None))
        .order_by(_events.c.position)
        .limit(1)
    )
    oldest = func.least(unpositioned.scalar_subquery(), unpublished.scalar_subquery())
    return Statement.of(select(func.coalesce(func.extract("epoch", func.now() - oldest), 0)))


_OLDEST_UNPUBLISHED_AGE = _oldest_unpublished_age()
_BY_EVENT_ID = Statement.of(select(*_events.columns).where(_events.c.event_id == bindparam("event_id")))


def _purge_statement() -> Statement:
    """Delete old events, positioned ones only and never the one with the highest position: the
    next positions count on from it, so a cursor a consumer holds stays valid after a purge."""
    expired = _events.c.created_at <= func.now() - cast_(bindparam("retention", Interval), Interval)
    done = _events.c.published_at.is_not(None) | ~bindparam("keep_unpublished")
    below_last = _events.c.position < select(func.max(_events.c.position)).scalar_subquery()
    batch = (
        select(_events.c.id)
        .where(expired, done, below_last)
        .limit(bindparam("batch_size"))
        .with_for_update(skip_locked=True)
    )
    return Statement.of(delete(_events).where(_events.c.id.in_(batch)))


_PURGE = _purge_statement()

FILTERS = ("type", "payment_id", "created_from", "created_to")


def _condition(name: str) -> ColumnElement[bool]:
    if name == "created_from":
        return _events.c.created_at >= bindparam(name, type_=_events.c.created_at.type)
    if name == "created_to":
        return _events.c.created_at <= bindparam(name, type_=_events.c.created_at.type)
    return _events.c[name] == bindparam(name, type_=_events.c[name].type)


@lru_cache(maxsize=64)
def _page_statement(filters: frozenset[str], after: bool) -> Statement:
    conditions = [_condition(name) for name in FILTERS if name in filters]
    if after:
        conditions.append(_events.c.position > bindparam("after", BigInteger))
    return Statement.of(
        select(*_events.columns)
        .where(_events.c.position.is_not(None), *conditions)
        .order_by(_events.c.position)
        .limit(bindparam("limit"))
    )


@dataclass(frozen=True, slots=True)
class EventFilters:
    type: str | None = None
    payment_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def values(self) -> dict[str, Any]:
        return {name: value for name in FILTERS if (value := getattr(self, name)) is not None}


class Events:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def of_payment(
        self,
        payment_id: int,
        event_type: str,
        *,
        actor: str,
        previous_status: str | None = None,
        detail: str | None = None,
    ) -> None:
        """The event of a change to a payment, with the payment as this transaction now sees it."""
        await self._of_row(_OF_PAYMENT, payment_id, event_type, actor, previous_status, detail)

    async def of_refund(
        self, refund_id: int, event_type: str, *, actor: str, previous_status: str | None = None
    ) -> None:
        """The event of a change to a refund, with the refund as this transaction now sees it."""
        await self._of_row(_OF_REFUND, refund_id, event_type, actor, previous_status, None)

    async def _of_row(
        self,
        statement: Statement,
        row_id: int,
        event_type: str,
        actor: str,
        previous_status: str | None,
        detail: str | None,
    ) -> None:
        EVENTS_WRITTEN.labels(event_type).inc()
        await self.uow.execute(
            statement,
            row_id=row_id,
            event_type=event_type,
            previous_status=previous_status,
            actor=actor,
            request_id=self.uow.request_id,
            detail=detail[:500] if detail else None,
        )

    async def position_new(self, batch_size: int = 1000) -> int:
        """Give positions to the committed events that have none (in id order); how many."""
        positioned = 0
        while True:
            async with self.uow.transaction():
                await self.uow.fetchval(_LOCK, lock_key=POSITION_LOCK)
                count = int((await self.uow.execute(_POSITION, batch_size=batch_size)).split()[-1])
            positioned += count
            if count < batch_size:
                return positioned

    async def try_publish_lock(self, idle_timeout_seconds: float) -> bool:
        """Inside a transaction: whether this relay may publish now (one at a time). The transaction
        is ended by PostgreSQL if it stays idle longer than `idle_timeout_seconds`."""
        idle_timeout = f"{int(idle_timeout_seconds * 1000)}ms"
        return bool(await self.uow.fetchval(_TRY_LOCK, lock_key=PUBLISH_LOCK, idle_timeout=idle_timeout))

    async def unpublished(self, batch_size: int) -> list[dict[str, Any]]:
        return [dict(row) for row in await self.uow.fetch(_UNPUBLISHED, batch_size=batch_size)]

    async def mark_published(self, ids: list[int]) -> None:
        await self.uow.execute(_MARK_PUBLISHED, ids=ids)

    async def oldest_unpublished_age(self) -> float:
        age = await self.uow.fetchval(_OLDEST_UNPUBLISHED_AGE)
        return float(age) if age is not None else 0.0

    async def get(self, event_id: Any) -> dict[str, Any] | None:
        row = await self.uow.fetchrow(_BY_EVENT_ID, event_id=event_id)
        return None if row is None else dict(row)

    async def page(self, filters: EventFilters, *, after: int | None, limit: int) -> list[dict[str, Any]]:
        values = filters.values()
        statement = _page_statement(frozenset(values), after is not None)
        rows = await self.uow.fetch(statement, **values, **({"after": after} if after is not None else {}), limit=limit)
        return [dict(row) for row in rows]

    async def purge_expired(self, retention: timedelta, *, keep_unpublished: bool, batch_size: int = 1000) -> int:
        status = await self.uow.execute(
            _PURGE, retention=retention, keep_unpublished=keep_unpublished, batch_size=batch_size
        )
        return int(status.split()[-1])
