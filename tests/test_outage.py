"""PostgreSQL goes away and comes back while a real server process is taking requests; SIGTERM
lets in-flight requests finish. These use their own embedded PostgreSQL, which they stop."""

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from scripts import embedded_postgres
from tests import databases
from tests.conftest import TEST_SECRET
from tests.live import uvicorn_servers
from tests.test_races import headers_for

pytestmark = pytest.mark.slow


@dataclass
class Outcome:
    payment_id: str
    status: int
    started: float
    seconds: float


@pytest.fixture
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    data_dir = tmp_path_factory.mktemp("outage") / "pg"
    url = embedded_postgres.asyncpg_url(data_dir)
    app_url = databases.create_database(url, "outage")
    databases.migrate(app_url)
    yield data_dir, app_url
    embedded_postgres.stop(data_dir)


async def _rows(url: str, query: str) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(query))).all())
    finally:
        await engine.dispose()


async def test_the_service_survives_a_database_restart(own_postgres: tuple[Path, str]) -> None:
    data_dir, url = own_postgres
    env = {"DATABASE_URL": url, "SECRET_KEY": TEST_SECRET, "DB_CONNECT_TIMEOUT_SECONDS": "1"}
    with uvicorn_servers(1, env) as [server]:
        base = server.url
        outcomes: list[Outcome] = []
        reads: list[Outcome] = []
        created: list[int] = []
        stop_at = time.monotonic() + 12

        async def client_loop() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                while time.monotonic() < stop_at:
                    payment_id = f"pi_{uuid.uuid4().hex}"
                    started = time.monotonic()
                    response = await client.post(
                        "/api/v1/payments/",
                        json={"payment_id": payment_id, "provider": "stripe", "currency": "USD", "amount_total": "1"},
                        headers=headers_for(1),
                    )
                    outcomes.append(Outcome(payment_id, response.status_code, started, time.monotonic() - started))
                    if response.status_code == 503:
                        assert response.headers["retry-after"]
                        assert response.headers["content-type"] == "application/problem+json"
                    if created:  # reads take another path (asyncpg directly): it must fail and recover alike
                        started = time.monotonic()
                        read = await client.get(f"/api/v1/payments/{created[-1]}", headers=headers_for(1))
                        reads.append(Outcome(str(created[-1]), read.status_code, started, time.monotonic() - started))
                        if read.status_code == 503:
                            assert read.headers["content-type"] == "application/problem+json"
                    if response.status_code == 201:
                        created.append(response.json()["id"])
                    await asyncio.sleep(0.02)

        async def outage() -> tuple[float, float, list[int], list[int]]:
            await asyncio.sleep(2)
            down_at = time.monotonic()
            await asyncio.to_thread(embedded_postgres.stop, data_dir)
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                await asyncio.sleep(1)
                probes = [(await client.get("/health")).status_code, (await client.get("/health/ready")).status_code]
                await asyncio.sleep(1)
                up_at = time.monotonic()
                await asyncio.to_thread(embedded_postgres.server, data_dir)
                await asyncio.sleep(5)
                after = [(await client.get("/health")).status_code, (await client.get("/health/ready")).status_code]
            return down_at, up_at, probes, after

        loops = [asyncio.create_task(client_loop()) for _ in range(4)]
        down_at, up_at, probes, after = await outage()
        await asyncio.gather(*loops)

    assert probes == [200, 503], "liveness stays up while readiness reports the outage"
    assert after == [200, 200], f"health and readiness 5 s after the restart: {after}"
    statuses = {outcome.status for outcome in outcomes}
    assert statuses <= {201, 503}, statuses
    failed = [o for o in outcomes if o.status == 503]
    assert failed, "some requests ran while the database was down"
    assert max(o.seconds for o in failed) < 3.0, "requests fail fast while the database is down"
    recovered = [o for o in outcomes if o.status == 201 and o.started > up_at]
    assert recovered and recovered[0].started + recovered[0].seconds - up_at < 5.0, "serving again within 5 s"
    assert [o for o in outcomes if o.status == 201 and o.started < down_at], "creates succeeded before the outage"
    assert {read.status for read in reads} <= {200, 503}, {read.status for read in reads}
    assert [read for read in reads if read.status == 503], "some reads ran while the database was down"
    slowest_failed_read = max(read.seconds for read in reads if read.status == 503)
    assert slowest_failed_read < 3.0, f"reads fail fast while the database is down: {slowest_failed_read:.2f} s"
    reads_after = [read.status for read in reads if read.started > up_at + 5]
    assert reads_after and set(reads_after) == {200}, "reads are served again once the database is back"

    stored = {row[0] for row in await _rows(url, "SELECT payment_id FROM payments")}
    acknowledged = {o.payment_id for o in outcomes if o.status == 201}
    assert acknowledged <= stored, "every payment a client saw a 201 for exists"
    assert stored <= {o.payment_id for o in outcomes}, "only payments the clients sent exist"
    half_written = await _rows(
        url,
        "SELECT p.id FROM payments p LEFT JOIN payment_status_history h ON h.payment_id = p.id WHERE h.id IS NULL",
    )
    assert half_written == [], "no payment without its history row"


def test_sigterm_lets_in_flight_requests_finish(own_postgres: tuple[Path, str]) -> None:
    _, url = own_postgres
    env = {"DATABASE_URL": url, "SECRET_KEY": TEST_SECRET, "LOG_LEVEL": "INFO"}
    with uvicorn_servers(1, env) as [server], httpx.Client(base_url=server.url, timeout=15) as client:
        base = server.url
        created = client.post(
            "/api/v1/payments/",
            json={"payment_id": "pi_term", "provider": "stripe", "currency": "USD", "amount_total": "1"},
            headers=headers_for(1),
        )
        payment_id = created.json()["id"]

        async def scenario() -> httpx.Response:
            # Hold the payment's row lock so the PATCH is in flight when SIGTERM arrives.
            engine = create_async_engine(url)
            try:
                async with engine.connect() as connection, connection.begin():
                    await connection.execute(text(f"SELECT 1 FROM payments WHERE id = {int(payment_id)} FOR UPDATE"))
                    async with httpx.AsyncClient(base_url=base, timeout=15) as async_client:
                        patch = asyncio.create_task(
                            async_client.patch(
                                f"/api/v1/payments/{payment_id}/status",
                                json={"payment_status": "succeeded"},
                                headers=headers_for(1),
                            )
                        )
                        await asyncio.sleep(0.5)
                        server.process.send_signal(signal.SIGTERM)
                        await asyncio.sleep(0.5)
                        assert not patch.done()
                        await connection.rollback()  # release the lock: the PATCH can now finish
                        return await patch
            finally:
                await engine.dispose()

        response = asyncio.run(scenario())
        assert response.status_code == 200
        assert response.json()["payment_status"] == "succeeded"
        # uvicorn re-raises the signal once it has shut down, so the exit status reports SIGTERM.
        assert server.process.wait(timeout=10) in (0, -signal.SIGTERM)
        shutdown = [line for line in server.log_path.read_text().splitlines() if "shutdown" in line.lower()]
        assert any("Application shutdown complete" in line for line in shutdown), shutdown
    rows = asyncio.run(_rows(url, f"SELECT payment_status::text FROM payments WHERE id = {int(payment_id)}"))
    assert rows == [("succeeded",)]
