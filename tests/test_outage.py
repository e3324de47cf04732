"""PostgreSQL goes away and comes back while a real server process is taking requests; SIGTERM
lets in-flight requests finish. These use their own embedded PostgreSQL, which they stop."""

import asyncio
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
def own_postgres() -> Iterator[tuple[Path, str]]:
    # Not under pytest's tmp_path: PostgreSQL runs as pgserver's own user when we are root, and any
    # pytest process started meanwhile makes /tmp/pytest-of-<user> private (0700) again.
    data_dir = Path(tempfile.mkdtemp(prefix="outage-")) / "pg"
    try:
        url = embedded_postgres.asyncpg_url(data_dir)
        app_url = databases.create_database(url, "outage")
        databases.migrate(app_url)
        yield data_dir, app_url
        embedded_postgres.stop(data_dir)
    finally:
        shutil.rmtree(data_dir.parent, ignore_errors=True)


async def test_the_service_survives_a_database_restart(own_postgres: tuple[Path, str]) -> None:
    data_dir, url = own_postgres
    env = {
        "DATABASE_URL": url,
        "SECRET_KEY": TEST_SECRET,
        "DB_CONNECT_TIMEOUT_SECONDS": "1",
        "USER_WRITE_LIMIT_PER_MINUTE": "0",  # four clients creating non-stop as one user
    }
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
                        assert response.headers["retry-after"] == "2"
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

    stored = {row[0] for row in await databases.rows(url, "SELECT payment_id FROM payments")}
    acknowledged = {o.payment_id for o in outcomes if o.status == 201}
    assert acknowledged <= stored, "every payment a client saw a 201 for exists"
    assert stored <= {o.payment_id for o in outcomes}, "only payments the clients sent exist"
    half_written = await databases.rows(
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
                                headers=headers_for(2, service=True),
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
    rows = asyncio.run(databases.rows(url, f"SELECT payment_status::text FROM payments WHERE id = {int(payment_id)}"))
    assert rows == [("succeeded",)]


def postgres_pids(data_dir: Path) -> list[int]:
    """The postmaster (first line of postmaster.pid) and all its children."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


CHAOS_SECONDS = 30


async def test_stop_start_and_kill_under_mixed_load_on_two_processes(own_postgres: tuple[Path, str]) -> None:
    """For 30 s PostgreSQL is stopped, started and killed in turn while clients create (with an
    Idempotency-Key), move and read payments through two server processes. Every answer is a 2xx or
    a 503; afterwards every acknowledged payment and move is stored with its history, and a retry of
    each create that got a 503, with its key, answers with the one stored payment."""
    data_dir, url = own_postgres
    env = {
        "DATABASE_URL": url,
        "SECRET_KEY": TEST_SECRET,
        "DB_CONNECT_TIMEOUT_SECONDS": "1",
        "IDEMPOTENCY_LOCK_TIMEOUT_SECONDS": "4",  # a key a failed release left in flight frees up soon
        "USER_WRITE_LIMIT_PER_MINUTE": "0",
    }
    answers: Counter[tuple[str, int]] = Counter()
    creates: list[tuple[int, str, int, int | None]] = []  # (user, key, status, payment's id)
    moves: list[tuple[int, int]] = []  # (payment's id, status)
    with uvicorn_servers(2, env) as servers:
        stop_at = time.monotonic() + CHAOS_SECONDS

        async def client_loop(user_id: int) -> None:
            user, backend = headers_for(user_id), headers_for(50, service=True)
            pending: list[int] = []
            async with httpx.AsyncClient(timeout=15) as client:
                while time.monotonic() < stop_at:
                    base = servers[len(creates) % 2].url
                    key = uuid.uuid4().hex
                    created = await client.post(
                        f"{base}/api/v1/payments/", json=new_payment(key), headers={**user, "Idempotency-Key": key}
                    )
                    answers["POST", created.status_code] += 1
                    new_id = created.json()["id"] if created.status_code == 201 else None
                    creates.append((user_id, key, created.status_code, new_id))
                    if created.status_code == 503:
                        assert created.headers["retry-after"] == "2", created.headers
                        assert created.headers["content-type"] == "application/problem+json"
                    if pending:
                        target = pending.pop(0)
                        moved = await client.patch(
                            f"{base}/api/v1/payments/{target}/status",
                            json={"payment_status": "processing"},
                            headers=backend,
                        )
                        answers["PATCH", moved.status_code] += 1
                        moves.append((target, moved.status_code))
                        read = await client.get(f"{base}/api/v1/payments/{target}", headers=user)
                        answers["GET", read.status_code] += 1
                    if new_id is not None:
                        pending.append(new_id)
                    await asyncio.sleep(0.01)

        async def chaos() -> list[str]:
            done: list[str] = []
            while time.monotonic() < stop_at - 4:
                await asyncio.sleep(2)
                if len(done) % 2 == 0:
                    await asyncio.to_thread(embedded_postgres.stop, data_dir)
                    done.append("stop")
                else:
                    os.kill(postgres_pids(data_dir)[0], signal.SIGKILL)
                    done.append("kill")
                await asyncio.sleep(1.5)
                await asyncio.to_thread(embedded_postgres.server, data_dir)
            return done

        loops = [asyncio.create_task(client_loop(user_id)) for user_id in range(1, 5)]
        happened = await chaos()
        await asyncio.gather(*loops)

        stored_before_retries = {row[0] for row in await databases.rows(url, "SELECT payment_id FROM payments")}
        await asyncio.sleep(4.5)  # past IDEMPOTENCY_LOCK_TIMEOUT_SECONDS
        retries: list[tuple[str, httpx.Response]] = []
        async with httpx.AsyncClient(base_url=servers[0].url, timeout=15) as client:
            for user_id, key, status, _ in creates:
                if status != 201:
                    retry = await client.post(
                        "/api/v1/payments/",
                        json=new_payment(key),
                        headers={**headers_for(user_id), "Idempotency-Key": key},
                    )
                    retries.append((key, retry))

    summary = f"{happened}: {dict(answers)}"
    assert "stop" in happened and "kill" in happened, summary
    assert {status for (_, status) in answers} <= {200, 201, 503}, summary
    assert answers["POST", 201] > 50 and answers["POST", 503] > 0 and answers["PATCH", 200] > 0, summary
    stored = {row[0]: row[1] for row in await databases.rows(url, "SELECT payment_id, id FROM payments")}
    for _, key, status, new_id in creates:
        if status == 201:
            assert stored.get(f"pi_{key}") == new_id, f"acknowledged pi_{key} is stored ({summary})"
    for key, retry in retries:
        assert retry.status_code == 201, (key, retry.status_code, retry.text)
        assert stored[f"pi_{key}"] == retry.json()["id"], f"the retry of {key} answers with the stored payment"
        # A 503 whose work had committed after all (the answer lost on the way) is replayed, not redone.
        replayed = retry.headers.get("idempotent-replayed") == "true"
        assert replayed == (f"pi_{key}" in stored_before_retries), (key, replayed)
    assert set(stored) <= {f"pi_{key}" for _, key, _, _ in creates}, "only payments the clients sent exist"
    unrecorded = await databases.rows(
        url, "SELECT p.id FROM payments p LEFT JOIN payment_status_history h ON h.payment_id = p.id WHERE h.id IS NULL"
    )
    assert unrecorded == [], "no payment without its creation history"
    moved = {
        row[0]
        for row in await databases.rows(
            url, "SELECT payment_id FROM payment_status_history WHERE to_status = 'processing'"
        )
    }
    for payment_id, status in moves:
        if status == 200:
            assert payment_id in moved, f"the acknowledged move of {payment_id} has its history row"


def new_payment(key: str) -> dict[str, str]:
    return {"payment_id": f"pi_{key}", "provider": "stripe", "currency": "USD", "amount_total": "3"}


async def test_a_hung_database_is_a_503_within_the_deadline_and_recovery_is_quick(
    own_postgres: tuple[Path, str],
) -> None:
    """PostgreSQL's processes stopped (SIGSTOP): connections stay open and nothing answers. Reads
    and writes get a 503 within DB_REQUEST_TIMEOUT_SECONDS, readiness says so, and after SIGCONT the
    service answers again within 5 s."""
    data_dir, url = own_postgres
    env = {"DATABASE_URL": url, "SECRET_KEY": TEST_SECRET, "DB_REQUEST_TIMEOUT_SECONDS": "3"}
    with uvicorn_servers(1, env) as [server]:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            created = await client.post("/api/v1/payments/", json=new_payment("hung_0"), headers=headers_for(1))
            payment = f"/api/v1/payments/{created.json()['id']}"
            assert (await client.get(payment, headers=headers_for(1))).status_code == 200  # pooled connections open
            pids = postgres_pids(data_dir)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                timings = []
                for method, path, body in (
                    ("GET", payment, None),
                    ("POST", "/api/v1/payments/", new_payment("hung_1")),
                    ("GET", "/health/ready", None),
                ):
                    started = time.monotonic()
                    response = await client.request(method, path, json=body, headers=headers_for(1))
                    timings.append((method, path, response.status_code, round(time.monotonic() - started, 2)))
                    assert response.status_code == 503, (timings, response.text)
                    assert response.headers["retry-after"] == "2"
                assert all(seconds < 3.8 for *_, seconds in timings), timings
            finally:
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
            resumed = time.monotonic()
            while True:
                answer = await client.get(payment, headers=headers_for(1))
                if answer.status_code == 200 or time.monotonic() - resumed > 5:
                    break
                await asyncio.sleep(0.1)
            assert answer.status_code == 200, f"not serving again 5 s after SIGCONT: {answer.status_code}"
            assert time.monotonic() - resumed < 5
