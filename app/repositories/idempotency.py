"""Storage of Idempotency-Keys. Claims use INSERT ... ON CONFLICT so that exactly one of any number
of racing requests (in any process) owns a key."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, Interval, Table, bindparam, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from app.core.database import DriverConnection, DriverTransaction
from app.models import IdempotencyKey, IdempotencyState
from app.repositories.driver import DriverQuery


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


_keys = cast(Table, IdempotencyKey.__table__)
# Not named like the columns: in an UPDATE that would make them SET values.
_THIS_KEY = (_keys.c.user_id == bindparam("owner")) & (_keys.c.key == bindparam("key_text"))


def _claim_statement() -> ReturningInsert[tuple[datetime]]:
    """INSERT the key, or take over an expired or abandoned one; RETURNING its locked_at (the
    claim's time) only when this request now owns the key. Built once (it is on every keyed
    request)."""
    now = func.now()
    insert_key = insert(_keys).values(
        user_id=bindparam("user_id"),
        key=bindparam("key"),
        fingerprint=bindparam("fingerprint"),
        state=IdempotencyState.IN_FLIGHT,
        locked_at=now,
        created_at=now,
        expires_at=now + bindparam("ttl", type_=Interval),
    )
    taken_over = ("fingerprint", "state", "locked_at", "created_at", "expires_at")
    return insert_key.on_conflict_do_update(
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
    ).returning(_keys.c.locked_at)


_CLAIM = _claim_statement()
_GET = select(*_keys.columns).where(_THIS_KEY)
# The key, still in flight under this request's claim (its locked_at): after the lock timeout a retry
# may have taken the key over, and then neither completing nor releasing it is this request's to do.
_THIS_CLAIM = (
    _THIS_KEY
    & (_keys.c.state == IdempotencyState.IN_FLIGHT)
    & (_keys.c.locked_at == bindparam("claimed_at", type_=_keys.c.locked_at.type))
)
# Core statements (not ORM-enabled ones, which would also look for objects to synchronize).
_COMPLETE = (
    update(_keys)
    .where(_THIS_CLAIM)
    .values(
        state=IdempotencyState.COMPLETED,
        response_status=bindparam("status", type_=_keys.c.response_status.type),
        response_headers=bindparam("headers", type_=_keys.c.response_headers.type),
        response_body=bindparam("body", type_=_keys.c.response_body.type),
    )
)
_RELEASE = delete(_keys).where(_THIS_CLAIM)


_DRIVER_CLAIM = DriverQuery.of(_CLAIM)
_DRIVER_GET = DriverQuery.of(_GET)
_DRIVER_RELEASE = DriverQuery.of(_RELEASE)
_DRIVER_COMPLETE = DriverQuery.of(_COMPLETE)


class IdempotencyClaims:
    """The statements that run on their own, each committed at once (autocommit), before and after
    the request's transaction: on asyncpg directly (see DriverQuery), as they are on every keyed
    request."""

    def __init__(self, connection: DriverConnection) -> None:
        self.connection = connection

    async def claim(
        self, user_id: int, key: str, fingerprint: str, *, ttl: timedelta, lock_timeout: timedelta
    ) -> datetime | None:
        """Take the key for a new request when it is free, expired, or abandoned in flight: the
        claim's time, which names this claim from then on; None when the key is not free."""
        claimed: datetime | None = await _DRIVER_CLAIM.fetchval(
            self.connection, user_id=user_id, key=key, fingerprint=fingerprint, ttl=ttl, lock_timeout=lock_timeout
        )
        return claimed

    async def get(self, user_id: int, key: str) -> dict[str, Any] | None:
        return await _DRIVER_GET.fetchrow(self.connection, owner=user_id, key_text=key)

    async def release(self, user_id: int, key: str, claimed_at: datetime) -> None:
        await _DRIVER_RELEASE.execute(self.connection, owner=user_id, key_text=key, claimed_at=claimed_at)


class KeyedTransaction(Protocol):
    """The request's transaction as Idempotency-Key handling needs it: the key's response is
    stored in it, so the work and its stored response commit together or not at all."""

    async def complete(self, user_id: int, key: str, claimed_at: datetime, response: StoredResponse) -> bool:
        """Store the response on the key; False when the key is no longer under this claim."""
        ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


def _complete_values(user_id: int, key: str, claimed_at: datetime, response: StoredResponse) -> dict[str, Any]:
    return {
        "owner": user_id,
        "key_text": key,
        "claimed_at": claimed_at,
        "status": response.status,
        "headers": response.headers,
        "body": response.body,
    }


class DriverKeyedTransaction:
    """KeyedTransaction on a driver transaction (the create route)."""

    def __init__(self, transaction: DriverTransaction) -> None:
        self.transaction = transaction

    async def complete(self, user_id: int, key: str, claimed_at: datetime, response: StoredResponse) -> bool:
        connection = await self.transaction.connection()
        values = _complete_values(user_id, key, claimed_at, response)
        return await _DRIVER_COMPLETE.execute(connection, **values) == "UPDATE 1"

    async def commit(self) -> None:
        await self.transaction.commit()

    async def rollback(self) -> None:
        await self.transaction.rollback()


class IdempotencyRepository:
    """The statements on the request's session: a KeyedTransaction, and the housekeeping purge."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def complete(self, user_id: int, key: str, claimed_at: datetime, response: StoredResponse) -> bool:
        result = await self.session.execute(_COMPLETE, _complete_values(user_id, key, claimed_at, response))
        return isinstance(result, CursorResult) and result.rowcount == 1

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()

    async def purge_expired(self, batch_size: int = 1000) -> int:
        """Delete up to `batch_size` expired keys; rows locked by a running request are skipped."""
        expired = (
            select(IdempotencyKey.user_id, IdempotencyKey.key)
            .where(IdempotencyKey.expires_at <= func.now())
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        key_columns = tuple_(IdempotencyKey.user_id, IdempotencyKey.key)
        result = await self.session.execute(delete(IdempotencyKey).where(key_columns.in_(expired)))
        return result.rowcount if isinstance(result, CursorResult) else 0
