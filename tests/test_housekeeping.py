"""The purge of expired Idempotency-Keys on committed rows, as replicas run it: a key a request holds
locked is skipped without waiting (SKIP LOCKED), and the periodic loop purges, survives a failed
round and keeps going."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.config import Settings
from app.core.database import Database
from app.repositories.events import Events
from app.repositories.idempotency import IdempotencyKeys
from app.services.housekeeping import purge_expired_idempotency_keys, purge_periodically
from tests import databases
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def housekeeping_database_url(server_url: str) -> Iterator[str]:
    with databases.migrated_database(server_url, "housekeeping") as url:
        yield url


@pytest.fixture
async def engine(housekeeping_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(housekeeping_database_url)
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE idempotency_keys"))
        for number in range(3):
            await connection.execute(
                text(
                    "INSERT INTO idempotency_keys (user_id, key, fingerprint, state, expires_at) "
                    "VALUES (9, :key, 'f', 'completed', now() - interval '1 second')"
                ),
                {"key": f"old{number}"},
            )
    yield engine
    await engine.dispose()


@pytest.fixture
async def database(housekeeping_database_url: str) -> AsyncIterator[Database]:
    settings = Settings(secret_key=TEST_SECRET, database_url=housekeeping_database_url, _env_file=None)
    database = await Database.connect(settings)
    yield database
    await database.close()


async def remaining(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list((await connection.execute(text("SELECT key FROM idempotency_keys ORDER BY key"))).scalars())


async def test_a_key_locked_by_a_request_is_skipped_without_waiting(engine: AsyncEngine, database: Database) -> None:
    async with engine.connect() as request, request.begin():
        await request.execute(text("SELECT 1 FROM idempotency_keys WHERE key = 'old1' FOR UPDATE"))
        purged = await asyncio.wait_for(purge_expired_idempotency_keys(database), timeout=2)
        assert purged == 2
        assert await remaining(engine) == ["old1"]
    assert await purge_expired_idempotency_keys(database) == 1  # released: purged on the next round
    assert await remaining(engine) == []


async def test_the_periodic_purge_survives_a_failed_round(
    engine: AsyncEngine, database: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = IdempotencyKeys.purge_expired
    rounds: list[str] = []

    async def failing_once(self: IdempotencyKeys, batch_size: int = 1000) -> int:
        if not rounds:
            rounds.append("failed")
            raise ConnectionResetError("the database went away")
        rounds.append("purged")
        return await original(self, batch_size)

    monkeypatch.setattr(IdempotencyKeys, "purge_expired", failing_once)
    caplog.set_level(logging.INFO, logger="app.services.housekeeping")
    task = asyncio.create_task(purge_periodically(database, interval_seconds=0.05))
    try:
        for _ in range(100):
            if not await remaining(engine):
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await remaining(engine) == []
    assert rounds[0] == "failed" and "purged" in rounds
    messages = [record.getMessage() for record in caplog.records]
    assert "purging expired idempotency keys failed" in messages
    assert "purged 3 expired idempotency keys" in messages


async def test_a_relay_frozen_while_it_holds_the_publish_lock_loses_it(database: Database) -> None:
    """PostgreSQL ends the session of a publishing transaction left idle past its timeout (a relay
    paused or cut off), so a standby relay takes the lock over."""
    frozen = database.unit_of_work()
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):  # its session was ended while idle
        async with asyncio.timeout(5), frozen.transaction():
            assert await Events(frozen).try_publish_lock(idle_timeout_seconds=0.3)
            standby = database.unit_of_work()
            async with standby.transaction():
                assert not await Events(standby).try_publish_lock(idle_timeout_seconds=0.3)
            while True:  # frozen: idle longer than the timeout between statements
                await asyncio.sleep(0.5)
                await Events(frozen).oldest_unpublished_age()
    taken_over = database.unit_of_work()
    async with taken_over.transaction():
        assert await Events(taken_over).try_publish_lock(idle_timeout_seconds=0.3)
