"""Each database timeout met for real, against live server processes: a host that accepts the
connection and never answers (DB_CONNECT_TIMEOUT_SECONDS), a statement that waits on a row lock
(DB_STATEMENT_TIMEOUT_SECONDS, enforced by PostgreSQL), and a request that waits for the gate while
every connection is busy (DB_POOL_TIMEOUT_SECONDS). Each is a 503 problem with Retry-After, in
about the configured time, and nothing is written."""

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from tests import databases
from tests.conftest import TEST_SECRET
from tests.live import uvicorn_servers
from tests.test_races import headers_for

pytestmark = pytest.mark.slow

NEW_PAYMENT = {"payment_id": "pi_timeouts", "provider": "stripe", "currency": "USD", "amount_total": "8"}


@pytest.fixture(scope="module")
def timeouts_database_url(server_url: str) -> Iterator[str]:
    with databases.migrated_database(server_url, "timeouts") as url:
        yield url


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/database-unavailable"
    assert response.headers["retry-after"] == "2"


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def create(client: httpx.AsyncClient, gateway_id: str) -> int:
    created = await client.post(
        "/api/v1/payments/", json={**NEW_PAYMENT, "payment_id": gateway_id}, headers=headers_for(1)
    )
    return int(created.json()["id"])


def move_to_succeeded(client: httpx.AsyncClient, payment_id: int) -> Awaitable[httpx.Response]:
    """The gateway's outcome, as a trusted backend records it."""
    path = f"/api/v1/payments/{payment_id}/status"
    return client.patch(path, json={"payment_status": "succeeded"}, headers=headers_for(2, service=True))


@asynccontextmanager
async def row_locked(url: str, payment_id: int) -> AsyncIterator[AsyncConnection]:
    """The payment's row lock, held by the test until the block ends."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection, connection.begin():
            await connection.execute(text("SELECT 1 FROM payments WHERE id = :id FOR UPDATE"), {"id": payment_id})
            yield connection
    finally:
        await engine.dispose()


async def status_of(url: str, payment_id: int) -> str:
    [(status,)] = await databases.rows(url, "SELECT payment_status::text FROM payments WHERE id = :id", id=payment_id)
    return str(status)


async def test_a_host_that_never_answers_is_a_503_after_the_connect_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        env = {
            "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{port}/payments",
            "SECRET_KEY": TEST_SECRET,
            "DB_CONNECT_TIMEOUT_SECONDS": "1",
            "DB_REQUEST_TIMEOUT_SECONDS": "2",
        }
        with uvicorn_servers(1, env) as [server]:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                for request in (
                    client.get("/api/v1/payments/1", headers=headers_for(1)),
                    client.post("/api/v1/payments/", json=NEW_PAYMENT, headers=headers_for(1)),
                    client.get("/health/ready"),
                ):
                    response, seconds = await timed(request)
                    assert_unavailable(response)
                    assert 0.9 < seconds < 2.5, seconds


async def test_a_statement_past_the_statement_timeout_is_a_503_and_changes_nothing(
    timeouts_database_url: str,
) -> None:
    env = {
        "DATABASE_URL": timeouts_database_url,
        "SECRET_KEY": TEST_SECRET,
        "DB_STATEMENT_TIMEOUT_SECONDS": "1",
        "DB_REQUEST_TIMEOUT_SECONDS": "4",
    }
    with uvicorn_servers(1, env) as [server]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            payment_id = await create(client, "pi_statement")
            async with row_locked(timeouts_database_url, payment_id):
                response, seconds = await timed(move_to_succeeded(client, payment_id))
            assert_unavailable(response)
            assert 0.9 < seconds < 2.5, f"{seconds:.2f} s: PostgreSQL's statement_timeout, not the request deadline"
            assert (await client.get("/health/ready")).status_code == 200  # the connection was replaced
    assert await status_of(timeouts_database_url, payment_id) == "pending"


async def test_a_request_waiting_for_a_busy_pool_is_a_503_after_the_pool_timeout(timeouts_database_url: str) -> None:
    env = {
        "DATABASE_URL": timeouts_database_url,
        "SECRET_KEY": TEST_SECRET,
        "DB_POOL_SIZE": "1",
        "DB_POOL_TIMEOUT_SECONDS": "1",
        "DB_STATEMENT_TIMEOUT_SECONDS": "8",
        "DB_REQUEST_TIMEOUT_SECONDS": "8",
        "IDEMPOTENCY_LOCK_TIMEOUT_SECONDS": "30",
    }
    with uvicorn_servers(1, env) as [server]:
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
            payment_id = await create(client, "pi_pool")
            async with row_locked(timeouts_database_url, payment_id):
                # Takes the only slot and waits for the test's row lock.
                holder = asyncio.ensure_future(move_to_succeeded(client, payment_id))
                while (await databases.rows(timeouts_database_url, databases.LOCK_WAITERS)) == [(0,)]:
                    await asyncio.sleep(0.02)  # until the holder has the slot and waits for the lock
                read, seconds = await timed(client.get(f"/api/v1/payments/{payment_id}", headers=headers_for(1)))
                ready, ready_seconds = await timed(client.get("/health/ready"))
                assert not holder.done()
            moved = await holder  # the lock is gone: the request that held the slot finishes
    assert_unavailable(read)
    assert 0.9 < seconds < 2, f"{seconds:.2f} s waiting for the gate"
    assert_unavailable(ready)  # readiness tells the truth: nothing is admitted in time
    assert 0.9 < ready_seconds < 2, ready_seconds
    assert moved.status_code == 200, moved.text
    assert await status_of(timeouts_database_url, payment_id) == "succeeded"
