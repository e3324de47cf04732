"""Storage of Idempotency-Keys. A claim is INSERT ... ON CONFLICT, so exactly one of any number of
racing requests (in any process) owns a key; it commits on its own, before the request's work, so
the others see it. The stored response commits with the work."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Interval,
    Select,
    Table,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.dml import Update

from app.core.database import Statement, UnitOfWork
from app.models import IdempotencyKey, IdempotencyState

_keys = cast(Table, IdempotencyKey.__table__)
# Not named like the columns: in an UPDATE that would make them SET values.
_THIS_KEY = (_keys.c.user_id == bindparam("owner")) & (_keys.c.key == bindparam("key_text"))
# The key, still in flight under the request's claim (its locked_at): after the lock timeout a retry
# may have taken the key over, and then neither completing nor releasing it is this request's to do.
_THIS_CLAIM = (
    _THIS_KEY
    & (_keys.c.state == IdempotencyState.IN_FLIGHT)
    & (_keys.c.locked_at == bindparam("claimed_at", type_=_keys.c.locked_at.type))
)


def _claim_statement(*, reserve_payment_id: bool) -> Statement:
    """INSERT the key, or take over an expired or abandoned one; RETURNING its locked_at (which
    names the claim) only when this request now owns the key, and for a create the new payment's
    id, reserved from the payments' sequence, so its response can be stored in the same statement
    as the payment (see Payments.insert_completing_key)."""
    now = func.now()
    insert_key = insert(_keys).values(
        user_id=bindparam("owner"),
        key=bindparam("key_text"),
        fingerprint=bindparam("fingerprint"),
        state=IdempotencyState.IN_FLIGHT,
        locked_at=now,
        created_at=now,
        expires_at=now + bindparam("ttl", type_=Interval),
    )
    taken_over = ("fingerprint", "state", "locked_at", "created_at", "expires_at")
    claim = insert_key.on_conflict_do_update(
        index_elements=[_keys.c.user_id, _keys.c.key],
        set_={
            **{name: insert_key.excluded[name] for name in taken_over},
            "response_status": None,
            "response_headers": None,
            "response_body": None,
        },
        where=or_(
            _keys.c.expires_at <= now,
            (_keys.c.state == IdempotencyState.IN_FLIGHT)
            & (_keys.c.locked_at <= now - bindparam("lock_timeout", type_=Interval)),
        ),
    )
    sequence: ColumnElement[Any] = literal_column("'payments_id_seq'::regclass")
    reserved = [func.nextval(sequence).label("payment_id")] if reserve_payment_id else []
    return Statement.of(claim.returning(_keys.c.locked_at, *reserved))


_CLAIM = _claim_statement(reserve_payment_id=False)
_CLAIM_RESERVING_PAYMENT_ID = _claim_statement(reserve_payment_id=True)
_GET = Statement.of(select(*_keys.columns).where(_THIS_KEY))
_RELEASE = Statement.of(delete(_keys).where(_THIS_CLAIM))


def this_claim() -> Select[Any]:
    """The request's claim, locked: part of a statement that writes the work and its stored
    response together (a retry taking the key over waits for it, then finds the key completed)."""
    return select(_keys.c.key).where(_THIS_CLAIM).with_for_update()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """A key this request owns: named by the claim's time, and for a create the reserved id."""

    user_id: int
    key: str
    claimed_at: datetime
    payment_id: int | None = None


@dataclass(frozen=True, slots=True)
class KeyCompletion:
    """The response to store on a claimed key, as the values of KeyCompletion.statement()."""

    claim: Claim
    response: StoredResponse

    @staticmethod
    def statement(*conditions: ColumnElement[bool]) -> Update:
        """Complete the key if it is still under the request's claim (and `conditions` hold)."""
        return (
            update(_keys)
            .where(_THIS_CLAIM, *conditions)
            .values(
                state=IdempotencyState.COMPLETED,
                response_status=bindparam("status", type_=_keys.c.response_status.type),
                response_headers=bindparam("headers", type_=_keys.c.response_headers.type),
                response_body=bindparam("body", type_=_keys.c.response_body.type),
            )
        )

    def values(self) -> dict[str, Any]:
        return {
            "owner": self.claim.user_id,
            "key_text": self.claim.key,
            "claimed_at": self.claim.claimed_at,
            "status": self.response.status,
            "headers": self.response.headers,
            "body": self.response.body,
        }


_COMPLETE = Statement.of(KeyCompletion.statement())


class IdempotencyKeys:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def claim(
        self,
        user_id: int,
        key: str,
        fingerprint: str,
        *,
        ttl: timedelta,
        lock_timeout: timedelta,
        reserve_payment_id: bool = False,
    ) -> Claim | None:
        """Take the key for a new request when it is free, expired, or abandoned in flight; None
        when it is not free."""
        row = await self.uow.fetchrow(
            _CLAIM_RESERVING_PAYMENT_ID if reserve_payment_id else _CLAIM,
            owner=user_id,
            key_text=key,
            fingerprint=fingerprint,
            ttl=ttl,
            lock_timeout=lock_timeout,
        )
        if row is None:
            return None
        return Claim(user_id, key, row["locked_at"], row["payment_id"] if reserve_payment_id else None)

    async def get(self, user_id: int, key: str) -> dict[str, Any] | None:
        row = await self.uow.fetchrow(_GET, owner=user_id, key_text=key)
        return None if row is None else dict(row)

    async def complete(self, completion: KeyCompletion) -> bool:
        """Store the response on the key; False when the key is no longer under this claim."""
        return await self.uow.execute(_COMPLETE, **completion.values()) == "UPDATE 1"

    async def release(self, claim: Claim) -> None:
        await self.uow.execute(_RELEASE, owner=claim.user_id, key_text=claim.key, claimed_at=claim.claimed_at)

    async def purge_expired(self, batch_size: int = 1000) -> int:
        """Delete up to `batch_size` expired keys; rows locked by a running request are skipped."""
        return int((await self.uow.execute(_PURGE, batch_size=batch_size)).split()[-1])


def _purge_statement() -> Statement:
    expired = (
        select(_keys.c.user_id, _keys.c.key)
        .where(_keys.c.expires_at <= func.now())
        .limit(bindparam("batch_size"))
        .with_for_update(skip_locked=True)
    )
    return Statement.of(delete(_keys).where(tuple_(_keys.c.user_id, _keys.c.key).in_(expired)))


_PURGE = _purge_statement()
