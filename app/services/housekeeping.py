"""Background housekeeping run by each process: purging expired Idempotency-Keys and old events.

Every replica may run it; the purges delete small batches with SKIP LOCKED, so they never wait for
(or block) a request that holds a row. They take their connections outside the request gate."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from app.core.database import Database
from app.repositories.events import Events
from app.repositories.idempotency import IdempotencyKeys

logger = logging.getLogger(__name__)


async def _in_batches(purge_batch: Callable[[], Awaitable[int]]) -> int:
    deleted = 0
    while True:
        batch = await purge_batch()
        deleted += batch
        if batch == 0:
            return deleted


async def purge_expired_idempotency_keys(database: Database) -> int:
    """Delete every expired key, batch by batch (each its own statement); returns how many."""
    return await _in_batches(lambda: IdempotencyKeys(database.unit_of_work().apart()).purge_expired())


async def purge_old_events(database: Database, retention: timedelta, *, keep_unpublished: bool) -> int:
    """Delete the events older than `retention`; with `keep_unpublished` (a broker is configured),
    only those the relay has published. Events get their positions first (old ones without one are
    not deleted), and the last positioned event is kept (see Events.purge_expired)."""
    await Events(database.unit_of_work().apart()).position_new()
    return await _in_batches(
        lambda: Events(database.unit_of_work().apart()).purge_expired(retention, keep_unpublished=keep_unpublished)
    )


async def purge_periodically(
    database: Database,
    interval_seconds: float,
    *,
    events_retention: timedelta | None = None,
    keep_unpublished_events: bool = True,
) -> None:
    rounds: list[tuple[str, Callable[[], Awaitable[int]]]] = [
        ("expired idempotency keys", lambda: purge_expired_idempotency_keys(database))
    ]
    if events_retention is not None:
        retention = events_retention
        rounds.append(
            ("old events", lambda: purge_old_events(database, retention, keep_unpublished=keep_unpublished_events))
        )
    while True:
        await asyncio.sleep(interval_seconds)
        for what, purge in rounds:
            try:
                deleted = await purge()
            except Exception:  # the next round retries; a failed purge must never stop the service
                logger.exception("purging %s failed", what)
            else:
                if deleted:
                    logger.info("purged %d %s", deleted, what)
