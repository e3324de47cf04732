"""Background housekeeping run by each process: purging expired Idempotency-Keys.

Every replica may run it; the purge deletes small batches with SKIP LOCKED, so it never waits for
(or blocks) a request that holds a key. It takes its connections outside the request gate."""

import asyncio
import logging

from app.core.database import Database
from app.repositories.idempotency import IdempotencyKeys

logger = logging.getLogger(__name__)


async def purge_expired_idempotency_keys(database: Database) -> int:
    """Delete every expired key, batch by batch (each its own statement); returns how many."""
    deleted = 0
    while True:
        batch = await IdempotencyKeys(database.unit_of_work().apart()).purge_expired()
        deleted += batch
        if batch == 0:
            return deleted


async def purge_periodically(database: Database, interval_seconds: float) -> None:
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            deleted = await purge_expired_idempotency_keys(database)
        except Exception:  # the next round retries; a failed purge must never stop the service
            logger.exception("purging expired idempotency keys failed")
        else:
            if deleted:
                logger.info("purged %d expired idempotency keys", deleted)
