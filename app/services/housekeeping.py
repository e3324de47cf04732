"""Background housekeeping run by each process: purging expired Idempotency-Keys.

Every replica may run it; the purge deletes small batches with SKIP LOCKED, so it never waits for
(or blocks) a request that holds a key."""

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.repositories.idempotency import IdempotencyRepository

logger = logging.getLogger(__name__)


async def purge_expired_idempotency_keys(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Delete every expired key, batch by batch; returns how many were deleted."""
    deleted = 0
    while True:
        async with sessionmaker() as session, session.begin():
            batch = await IdempotencyRepository(session).purge_expired()
        deleted += batch
        if batch == 0:
            return deleted


async def purge_periodically(sessionmaker: async_sessionmaker[AsyncSession], interval_seconds: float) -> None:
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            deleted = await purge_expired_idempotency_keys(sessionmaker)
        except Exception:  # the next round retries; a failed purge must never stop the service
            logger.exception("purging expired idempotency keys failed")
        else:
            if deleted:
                logger.info("purged %d expired idempotency keys", deleted)
