"""Storage of Idempotency-Keys. Claims use INSERT ... ON CONFLICT so that exactly one of any number
of racing requests (in any process) owns a key."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import CursorResult, Row, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import IdempotencyKey, IdempotencyState


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class IdempotencyRepository:
    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        # A session (inside the request's transaction) or a plain connection (a claim on its own).
        self.session = session

    async def claim(self, user_id: int, key: str, fingerprint: str, *, ttl: timedelta, lock_timeout: timedelta) -> bool:
        """Take the key for a new request: True when it was free, expired, or abandoned in flight."""
        now = func.now()
        values = {
            "user_id": user_id,
            "key": key,
            "fingerprint": fingerprint,
            "state": IdempotencyState.IN_FLIGHT,
            "locked_at": now,
            "created_at": now,
            "expires_at": now + ttl,
        }
        insert_key = insert(IdempotencyKey).values(values)
        statement = insert_key.on_conflict_do_update(
            index_elements=[IdempotencyKey.user_id, IdempotencyKey.key],
            set_={
                **{
                    name: insert_key.excluded[name]
                    for name in ("fingerprint", "state", "locked_at", "created_at", "expires_at")
                },
                "response_status": None,
                "response_headers": None,
                "response_body": None,
            },
            where=or_(
                IdempotencyKey.expires_at <= now,
                (IdempotencyKey.state == IdempotencyState.IN_FLIGHT) & (IdempotencyKey.locked_at <= now - lock_timeout),
            ),
        ).returning(IdempotencyKey.user_id)
        return (await self.session.execute(statement)).first() is not None

    async def get(self, user_id: int, key: str) -> Row[Any] | None:
        table = IdempotencyKey.__table__
        statement = select(*table.columns).where(table.c.user_id == user_id, table.c.key == key)
        return (await self.session.execute(statement)).first()

    async def complete(self, user_id: int, key: str, response: StoredResponse) -> None:
        await self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
            .values(
                state=IdempotencyState.COMPLETED,
                response_status=response.status,
                response_headers=response.headers,
                response_body=response.body,
            )
        )

    async def release(self, user_id: int, key: str) -> None:
        await self.session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.user_id == user_id,
                IdempotencyKey.key == key,
                IdempotencyKey.state == IdempotencyState.IN_FLIGHT,
            )
        )

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
