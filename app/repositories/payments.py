"""Statements on payments and their status history, each a SQLAlchemy Core statement compiled once
(a list query once per combination of filters) and run on the request's unit of work. No HTTP, no
authorization rules: callers say whose rows and which moves are allowed."""

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import (
    ARRAY,
    Boolean,
    ColumnElement,
    Integer,
    String,
    Table,
    any_,
    bindparam,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from app.core.database import Statement, UnitOfWork, one
from app.core.pagination import Keyset
from app.models import Payment, PaymentProvider, PaymentStatus, PaymentStatusHistory
from app.repositories.events import event_recorded
from app.repositories.idempotency import KeyCompletion, this_claim
from app.schemas.payment import PaymentRecord, StatusChange

_payments = cast(Table, Payment.__table__)
_history = cast(Table, PaymentStatusHistory.__table__)
_SELECT = select(*_payments.columns)
_HISTORY_COLUMNS = ["payment_id", "from_status", "to_status", "actor", "request_id", "event_id"]
_NEWEST_FIRST = (_payments.c.created_at.desc(), _payments.c.id.desc())
_OLDEST_FIRST = (_payments.c.created_at, _payments.c.id)

# Columns a new payment is inserted with (the rest have server defaults).
NEW_PAYMENT_COLUMNS = (
    "payment_id", "checkout_session_id", "payment_method_id", "payment_method_types", "payment_status",
    "provider", "currency", "amount_total", "customer_id", "customer_email", "booking_id", "property_id",
    "description", "metadata", "user_id",
)  # fmt: skip
# Columns a PUT may change; the statement sets them all, from the locked row with the changes applied.
MUTABLE_COLUMNS = (
    "payment_id", "checkout_session_id", "payment_method_id", "payment_method_types", "currency", "amount_total",
    "customer_id", "customer_email", "booking_id", "property_id", "description", "metadata",
)  # fmt: skip


def _typed(name: str) -> Any:
    return bindparam(name, type_=_payments.c[name].type)


def _by(column: str, *, locked: bool = False) -> Statement:
    query = _SELECT.where(_payments.c[column] == _typed(column))
    return Statement.of(query.with_for_update() if locked else query)


_BY_ID = _by("id")
_BY_ID_LOCKED = _by("id", locked=True)
_BY_GATEWAY_ID = _by("payment_id")
_BY_GATEWAY_ID_LOCKED = _by("payment_id", locked=True)
_BY_CHECKOUT_SESSION_LOCKED = _by("checkout_session_id", locked=True)
_HISTORY = Statement.of(
    select(*_history.columns).where(_history.c.payment_id == bindparam("payment_id")).order_by(_history.c.id)
)


def _creation_recorded(inserted: Any) -> Any:
    """The history row of a payment's creation (null -> its status), for a statement's CTE."""
    creation = select(
        inserted.c.id,
        null(),
        inserted.c.payment_status,
        bindparam("actor", String),
        bindparam("request_id", String),
        null(),
    )
    return insert(_history).from_select(_HISTORY_COLUMNS, creation).cte("recorded")


_CREATED = literal("payment.created", String)


def _insert_statement() -> Statement:
    """INSERT the payment (unless one of its gateway ids is taken), its creation history row and its
    payment.created event."""
    values = {name: _typed(name) for name in NEW_PAYMENT_COLUMNS}
    inserted = insert(_payments).values(values).on_conflict_do_nothing().returning(*_payments.columns).cte("inserted")
    return Statement.of(
        select(*inserted.c).add_cte(_creation_recorded(inserted)).add_cte(event_recorded(inserted, _CREATED))
    )


def _insert_completing_key_statement() -> Statement:
    """The same, with the id and time reserved by the Idempotency-Key's claim, and the key completed
    with the stored response, in one statement: only while the key is still in flight under the
    request's claim. The key's row is locked first, so a retry that takes the key over waits for
    this statement and then finds the key completed (or, had it come first, this statement finds
    no claim and writes nothing). Always one row: claim_held, then the payment's columns (nulls
    when nothing was inserted)."""
    claim = this_claim().cte("claim")
    at = _typed("created_at")
    values = select(_typed("id"), at, at, *(_typed(name) for name in NEW_PAYMENT_COLUMNS)).select_from(claim)
    inserted = (
        insert(_payments)
        .from_select(["id", "created_at", "updated_at", *NEW_PAYMENT_COLUMNS], values)
        .on_conflict_do_nothing()
        .returning(*_payments.columns)
        .cte("inserted")
    )
    completed = KeyCompletion.statement(exists(select(inserted.c.id))).cte("completed")
    held = select(func.count()).select_from(claim).scalar_subquery().label("claim_held")
    one = select(literal(1).label("one")).subquery("one")
    result = select(held, *inserted.c).select_from(one.outerjoin(inserted, true()))
    return Statement.of(
        result.add_cte(_creation_recorded(inserted)).add_cte(event_recorded(inserted, _CREATED)).add_cte(completed)
    )


def _move_statement() -> Statement:
    """Lock the payment and, if the caller may see it, the If-Match versions accept it and its
    status may move to the target, move it (version + 1) and record the move in the history: one
    statement. Returns the payment (moved or not) with the status it had, and whether it moved."""
    current = _SELECT.where(_payments.c.id == bindparam("row_id")).with_for_update().cte("current")
    statuses = ARRAY(_payments.c.payment_status.type)
    moved = (
        update(_payments)
        .where(
            _payments.c.id == current.c.id,
            or_(bindparam("any_owner", Boolean), current.c.user_id == bindparam("owner", _payments.c.user_id.type)),
            or_(bindparam("any_version", Boolean), current.c.version == any_(bindparam("versions", ARRAY(Integer)))),
            current.c.payment_status == any_(bindparam("from_statuses", statuses)),
        )
        .values(
            payment_status=bindparam("to_status", _payments.c.payment_status.type),
            version=_payments.c.version + 1,
            updated_at=func.now(),
        )
        .returning(*_payments.columns)
        .cte("moved")
    )
    entry = select(
        moved.c.id,
        current.c.payment_status,
        moved.c.payment_status,
        bindparam("actor", String),
        bindparam("request_id", String),
        bindparam("event_id", String),
    ).where(moved.c.id == current.c.id)
    recorded = insert(_history).from_select(_HISTORY_COLUMNS, entry).cte("recorded")
    # One event per status reached: payment.<status>, with the status it left.
    reached = func.concat("payment.", moved.c.payment_status)
    announced = event_recorded(moved, reached, previous_status=current.c.payment_status)
    after = select(true().label("moved"), current.c.payment_status.label("from_status"), *moved.c).where(
        moved.c.id == current.c.id
    )
    before = select(false(), current.c.payment_status, *current.c).where(~exists(select(moved.c.id)))
    return Statement.of(after.union_all(before).add_cte(recorded).add_cte(announced))


def _update_statement() -> Statement:
    """Set every mutable column of a locked payment (version + 1), returning it as stored."""
    values = {name: _typed(name) for name in MUTABLE_COLUMNS}
    return Statement.of(
        update(_payments)
        .where(_payments.c.id == bindparam("row_id"))
        .values(**values, version=_payments.c.version + 1, updated_at=func.now())
        .returning(*_payments.columns)
    )


def _adjust_refund_sums_statement() -> Statement:
    """Add to a locked payment's sums of succeeded and of pending refunds (version + 1); the
    payments' CHECK constraints refuse any result above amount_total or below zero."""
    sums = {name: _payments.c[name] + _typed(name) for name in ("amount_refunded", "amount_refund_pending")}
    return Statement.of(
        update(_payments)
        .where(_payments.c.id == bindparam("row_id"))
        .values(**sums, version=_payments.c.version + 1, updated_at=func.now())
        .returning(*_payments.columns)
    )


_INSERT = _insert_statement()
_INSERT_COMPLETING_KEY = _insert_completing_key_statement()
_MOVE = _move_statement()
_UPDATE = _update_statement()
_ADJUST_REFUND_SUMS = _adjust_refund_sums_statement()


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


_POSITION = tuple_(_payments.c.created_at, _payments.c.id)
_AFTER_POSITION = tuple_(
    bindparam("after_created_at", type_=_payments.c.created_at.type), bindparam("after_id", type_=_payments.c.id.type)
)
_AFTER = _POSITION < _AFTER_POSITION  # newest first: the rows after a position are older


@lru_cache(maxsize=512)
def _page_statements(filters: frozenset[str], keyset: bool) -> tuple[Statement, Statement]:
    """The page and count statements for one combination of filters. The keyset condition is served
    by the (user_id, created_at, id) index, so a cursor page costs the same at any depth."""
    conditions = [_condition(name) for name in _FILTER_NAMES if name in filters]
    page = (
        _SELECT.where(*conditions, *([_AFTER] if keyset else []))
        .order_by(*_NEWEST_FIRST)
        .offset(bindparam("offset", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
    )
    count = select(func.count().label("total")).select_from(_payments).where(*conditions)
    return Statement.of(page), Statement.of(count)


def _for_booking(owner_only: bool, keyset: bool) -> Statement:
    filters = ("user_id", "booking_id") if owner_only else ("booking_id",)
    later = [_POSITION > _AFTER_POSITION] if keyset else []  # oldest first: later rows
    statement = _SELECT.where(*map(_condition, filters), *later).order_by(*_OLDEST_FIRST)
    return Statement.of(statement.limit(bindparam("limit", type_=Integer)))


_FOR_BOOKING = {(owner, keyset): _for_booking(owner, keyset) for owner in (True, False) for keyset in (True, False)}


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[PaymentRecord]
    total: int | None
    has_more: bool


@dataclass(frozen=True, slots=True)
class Move:
    """What a move statement found: the payment (as moved, or as it was) and its status before."""

    payment: PaymentRecord
    from_status: PaymentStatus
    moved: bool


class UniqueViolation(Exception):
    """A change collided with another payment's unique gateway id."""


class KeyTakenOver(Exception):
    """The request's Idempotency-Key is no longer in flight under its claim: nothing was written."""


class Payments:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def _one(self, statement: Statement, **values: Any) -> PaymentRecord | None:
        row = await self.uow.fetchrow(statement, **values)
        return None if row is None else PaymentRecord.model_validate(dict(row))

    async def get(self, payment_id: int, *, locked: bool = False) -> PaymentRecord | None:
        """The payment; `locked` holds its row lock until the transaction ends (after begin())."""
        return await self._one(_BY_ID_LOCKED if locked else _BY_ID, id=payment_id)

    async def get_by_gateway_id(self, gateway_payment_id: str) -> PaymentRecord | None:
        return await self._one(_BY_GATEWAY_ID, payment_id=gateway_payment_id)

    async def find_for_provider_event(
        self, *, checkout_session_id: str | None, payment_intent_id: str | None
    ) -> PaymentRecord | None:
        """The payment a provider event is about, locked: by checkout session first, then by the
        gateway payment id."""
        if checkout_session_id is not None:
            found = await self._one(_BY_CHECKOUT_SESSION_LOCKED, checkout_session_id=checkout_session_id)
            if found is not None:
                return found
        if payment_intent_id is not None:
            return await self._one(_BY_GATEWAY_ID_LOCKED, payment_id=payment_intent_id)
        return None

    async def history(self, payment_id: int) -> list[StatusChange]:
        rows = await self.uow.fetch(_HISTORY, payment_id=payment_id)
        return [StatusChange.model_validate(dict(row)) for row in rows]

    async def list_for_booking(
        self, booking_id: str, *, user_id: int | None, limit: int, after: Keyset | None = None
    ) -> Page:
        """A booking's payments oldest first, `limit` at most, after the keyset position `after`."""
        values: dict[str, Any] = {"booking_id": booking_id, "user_id": user_id, "limit": limit + 1}
        if after is not None:
            values |= {"after_created_at": after.created_at, "after_id": after.id}
        rows = await self.uow.fetch(_FOR_BOOKING[user_id is not None, after is not None], **values)
        return Page([PaymentRecord.model_validate(dict(row)) for row in rows[:limit]], None, len(rows) > limit)

    async def list_page(
        self, filters: PaymentFilters, *, limit: int, offset: int = 0, after: Keyset | None = None, with_total: bool
    ) -> Page:
        """One page newest first: after `offset` rows, or after the keyset position `after`."""
        values = filters.bound_values()
        page_statement, count_statement = _page_statements(frozenset(values), after is not None)
        # One more row than asked tells whether there is a next page.
        page_values = {**values, "offset": offset, "limit": limit + 1}
        if after is not None:
            page_values |= {"after_created_at": after.created_at, "after_id": after.id}
        rows = await self.uow.fetch(page_statement, **page_values)
        total = int(await self.uow.fetchval(count_statement, **values)) if with_total else None
        return Page([PaymentRecord.model_validate(dict(row)) for row in rows[:limit]], total, len(rows) > limit)

    async def insert(self, values: dict[str, Any], *, actor: str, request_id: str | None) -> PaymentRecord | None:
        """Insert a payment, its creation history row and its event in one statement; None when its payment_id
        or checkout_session_id is taken (then nothing is written)."""
        return await self._one(_INSERT, **values, actor=actor, request_id=request_id)

    async def insert_completing_key(
        self, payment: PaymentRecord, key: KeyCompletion, *, actor: str, request_id: str | None
    ) -> PaymentRecord | None:
        """Insert `payment` (its id and time reserved by the key's claim), its history row, its event
        and the key's stored response, in one statement. None when a gateway id is taken (nothing written);
        KeyTakenOver when the key left this request's claim."""
        values = {name: getattr(payment, name) for name in NEW_PAYMENT_COLUMNS}
        row = await self.uow.fetchrow(
            _INSERT_COMPLETING_KEY,
            **values,
            **key.values(),
            id=payment.id,
            created_at=payment.created_at,
            actor=actor,
            request_id=request_id,
        )
        row = one(row)  # the statement always returns one row
        if not row["claim_held"]:
            raise KeyTakenOver
        if row["id"] is None:
            return None
        return PaymentRecord.model_validate(dict(row))

    async def move(
        self,
        payment_id: int,
        to_status: PaymentStatus,
        *,
        from_statuses: list[PaymentStatus],
        owner: int | None,
        versions: Any,
        actor: str,
        request_id: str | None,
        event_id: str | None = None,
    ) -> Move | None:
        """Move the payment to `to_status` if it is visible to `owner` (None: anyone's), its version
        is one of `versions` (None: any) and its status one of `from_statuses`, recording the move;
        None when there is no such payment."""
        row = await self.uow.fetchrow(
            _MOVE,
            row_id=payment_id,
            any_owner=owner is None,
            owner=owner,
            any_version=versions is None,
            versions=list(versions or ()),
            from_statuses=from_statuses,
            to_status=to_status,
            actor=actor,
            request_id=request_id,
            event_id=event_id,
        )
        if row is None:
            return None
        moved = dict(row)
        return Move(PaymentRecord.model_validate(moved), PaymentStatus(moved["from_status"]), moved["moved"])

    async def update(self, payment: PaymentRecord, changes: dict[str, Any]) -> PaymentRecord:
        """Store `changes` to a locked payment (version + 1); UniqueViolation when a gateway id
        belongs to another payment (the transaction must then end)."""
        values = {name: changes.get(name, getattr(payment, name)) for name in MUTABLE_COLUMNS}
        try:
            row = await self.uow.fetchrow(_UPDATE, row_id=payment.id, **values)
        except asyncpg.UniqueViolationError as error:
            raise UniqueViolation(str(error)) from error
        return PaymentRecord.model_validate(dict(one(row)))  # the row is locked by this transaction

    async def adjust_refund_sums(self, payment: PaymentRecord, *, refunded: Decimal, pending: Decimal) -> PaymentRecord:
        """Add `refunded` and `pending` (either may be negative) to a locked payment's refund sums."""
        row = await self.uow.fetchrow(
            _ADJUST_REFUND_SUMS, row_id=payment.id, amount_refunded=refunded, amount_refund_pending=pending
        )
        return PaymentRecord.model_validate(dict(one(row)))  # the row is locked by this transaction
