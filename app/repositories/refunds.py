"""Statements on refunds, each compiled once and run on the request's unit of work. Callers hold the
payment's row lock while they write a refund (see RefundService), and change the payment's sums
with Payments.adjust_refund_sums in the same transaction."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import ARRAY, Integer, Table, any_, bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert

from app.core.database import Statement, UnitOfWork, one
from app.core.pagination import Keyset
from app.models import PaymentProvider, Refund, RefundReason, RefundStatus
from app.schemas.refund import RefundRecord

_refunds = cast(Table, Refund.__table__)
_SELECT = select(*_refunds.columns)
_OLDEST_FIRST = (_refunds.c.created_at, _refunds.c.id)
NEW_REFUND_COLUMNS = (
    "payment_id", "provider", "refund_id", "amount", "currency", "status", "reason", "metadata",
    "actor", "request_id",
)  # fmt: skip


def _typed(name: str) -> Any:
    return bindparam(name, type_=_refunds.c[name].type)


# A gateway refund id already recorded for the provider: no row (a failed statement would end the
# transaction and cost the connection).
_INSERT = Statement.of(
    insert(_refunds)
    .values({name: _typed(name) for name in NEW_REFUND_COLUMNS})
    .on_conflict_do_nothing(index_elements=[_refunds.c.provider, _refunds.c.refund_id])
    .returning(*_refunds.columns)
)
_OF_PAYMENT = (_refunds.c.payment_id == _typed("payment_id")) & (_refunds.c.id == bindparam("row_id", Integer))
_BY_ID = Statement.of(_SELECT.where(_OF_PAYMENT))
_BY_ID_LOCKED = Statement.of(_SELECT.where(_OF_PAYMENT).with_for_update())
_BY_GATEWAY_ID_LOCKED = Statement.of(
    _SELECT.where(
        _refunds.c.provider == _typed("provider"), _refunds.c.refund_id == _typed("refund_id")
    ).with_for_update()
)
# The oldest refund of the payment recorded without a gateway id, of this amount, in one of these
# statuses: the one a gateway's refund event is about when it was recorded before its id was known.
_UNLINKED_LOCKED = Statement.of(
    _SELECT.where(
        _refunds.c.payment_id == _typed("payment_id"),
        _refunds.c.refund_id.is_(None),
        _refunds.c.amount == _typed("amount"),
        _refunds.c.status == any_(bindparam("statuses", ARRAY(_refunds.c.status.type))),
    )
    .order_by(*_OLDEST_FIRST)
    .limit(1)
    .with_for_update()
)
_LINK = Statement.of(
    update(_refunds)
    .where(_refunds.c.id == bindparam("row_id", Integer))
    .values(refund_id=_typed("refund_id"), version=_refunds.c.version + 1, updated_at=func.now())
    .returning(*_refunds.columns)
)
_SET_STATUS = Statement.of(
    update(_refunds)
    .where(_refunds.c.id == bindparam("row_id", Integer))
    .values(
        status=_typed("status"),
        failure_reason=_typed("failure_reason"),
        version=_refunds.c.version + 1,
        updated_at=func.now(),
    )
    .returning(*_refunds.columns)
)


def _page_statement(keyset: bool) -> Statement:
    later = (
        [
            tuple_(*_OLDEST_FIRST)
            > tuple_(bindparam("after_created_at", type_=_refunds.c.created_at.type), bindparam("after_id", Integer))
        ]
        if keyset
        else []
    )
    query = _SELECT.where(_refunds.c.payment_id == _typed("payment_id"), *later).order_by(*_OLDEST_FIRST)
    return Statement.of(query.limit(bindparam("limit", Integer)))


_PAGES = {keyset: _page_statement(keyset) for keyset in (False, True)}


class DuplicateGatewayRefund(Exception):
    """Another refund of this provider already has the gateway refund id."""


@dataclass(frozen=True, slots=True)
class RefundPageRows:
    rows: list[RefundRecord]
    has_more: bool


@dataclass(frozen=True, slots=True)
class NewRefund:
    payment_id: int
    provider: PaymentProvider
    amount: Decimal
    currency: str
    status: RefundStatus
    reason: RefundReason | None
    refund_id: str | None
    metadata: dict[str, str]
    actor: str


def _record(row: Any) -> RefundRecord:
    return RefundRecord.model_validate(dict(row))


class Refunds:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def insert(self, refund: NewRefund) -> RefundRecord:
        """DuplicateGatewayRefund when its gateway refund id is taken (the transaction must end)."""
        values = {name: getattr(refund, name) for name in NEW_REFUND_COLUMNS if name != "request_id"}
        row = await self.uow.fetchrow(_INSERT, **values, request_id=self.uow.request_id)
        if row is None:
            raise DuplicateGatewayRefund(f"{refund.provider.value} refund {refund.refund_id}")
        return _record(row)

    async def get(self, payment_id: int, refund_id: int, *, locked: bool = False) -> RefundRecord | None:
        row = await self.uow.fetchrow(_BY_ID_LOCKED if locked else _BY_ID, payment_id=payment_id, row_id=refund_id)
        return None if row is None else _record(row)

    async def find_by_gateway_id(self, provider: PaymentProvider, refund_id: str) -> RefundRecord | None:
        """The refund with this gateway id, locked (whichever payment it is of)."""
        row = await self.uow.fetchrow(_BY_GATEWAY_ID_LOCKED, provider=provider, refund_id=refund_id)
        return None if row is None else _record(row)

    async def find_unlinked(
        self, payment_id: int, amount: Decimal, statuses: list[RefundStatus]
    ) -> RefundRecord | None:
        row = await self.uow.fetchrow(_UNLINKED_LOCKED, payment_id=payment_id, amount=amount, statuses=statuses)
        return None if row is None else _record(row)

    async def link(self, refund: RefundRecord, gateway_refund_id: str) -> RefundRecord:
        return _record(one(await self.uow.fetchrow(_LINK, row_id=refund.id, refund_id=gateway_refund_id)))

    async def set_status(self, refund: RefundRecord, status: RefundStatus, failure_reason: str | None) -> RefundRecord:
        row = await self.uow.fetchrow(_SET_STATUS, row_id=refund.id, status=status, failure_reason=failure_reason)
        return _record(one(row))  # the refund is locked by this transaction

    async def page(self, payment_id: int, *, limit: int, after: Keyset | None) -> RefundPageRows:
        values: dict[str, Any] = {"payment_id": payment_id, "limit": limit + 1}
        if after is not None:
            values |= {"after_created_at": after.created_at, "after_id": after.id}
        rows = await self.uow.fetch(_PAGES[after is not None], **values)
        return RefundPageRows([_record(row) for row in rows[:limit]], len(rows) > limit)
