"""Races across two real server processes on one database: the guarantees must hold in PostgreSQL,
not in process memory. Every request is really committed here, so these tests use their own database."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from itertools import cycle
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.config import Settings
from app.core.security import create_access_token
from app.models import IdempotencyKey, Payment, PaymentStatus, PaymentStatusHistory, WebhookEvent
from tests import databases
from tests.conftest import STRIPE_SECRET, TEST_SECRET
from tests.live import uvicorn_servers
from tests.stripe_events import encode, signed_headers, stripe_event

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_database_url(server_url: str) -> Iterator[str]:
    with databases.migrated_database(server_url, "races") as url:
        yield url


def racing_env(database_url: str) -> dict[str, str]:
    """The settings of the server processes that race here (and in the refund races)."""
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "ENVIRONMENT": "test",
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        # Requests wait at the tests' barriers until all have lined up, which on a busy machine may
        # take longer than the production deadlines.
        "DB_REQUEST_TIMEOUT_SECONDS": "15",
        "DB_STATEMENT_TIMEOUT_SECONDS": "15",
        "DB_POOL_TIMEOUT_SECONDS": "15",
        "IDEMPOTENCY_LOCK_TIMEOUT_SECONDS": "30",
    }


@pytest.fixture(scope="module")
def servers(live_database_url: str) -> Iterator[list[str]]:
    with uvicorn_servers(2, racing_env(live_database_url)) as live:
        yield [server.url for server in live]


@pytest.fixture
async def live_db(live_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(live_database_url)
    async with engine.begin() as connection:
        await connection.execute(
            text("TRUNCATE payments, payment_status_history, idempotency_keys, webhook_events, refunds, events")
        )
    yield engine
    await engine.dispose()


def headers_for(user_id: int, *, service: bool = False, **extra: str) -> dict[str, str]:
    """An end user's token, or with `service` a trusted backend's (which may record gateway outcomes)."""
    settings = Settings(secret_key=TEST_SECRET, _env_file=None)
    token = create_access_token(user_id, settings, roles=[settings.service_role] if service else [])
    return {"Authorization": f"Bearer {token}", **extra}


Request = tuple[str, str, dict[str, Any] | bytes | None, dict[str, str]]  # a JSON body, or raw bytes


def sent_to(
    client: httpx.AsyncClient, servers: list[str], requests: Sequence[Request]
) -> list[Awaitable[httpx.Response]]:
    """Each request, alternating between the servers (not awaited yet)."""
    return [
        client.request(
            method,
            base + path,
            json=None if isinstance(payload, bytes) else payload,
            content=payload if isinstance(payload, bytes) else None,
            headers=headers,
        )
        for base, (method, path, payload, headers) in zip(cycle(servers), requests, strict=False)
    ]


async def fire(servers: list[str], requests: Sequence[Request]) -> list[httpx.Response]:
    """Send all requests at once, alternating between the servers."""
    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=200)) as client:
        return list(await asyncio.gather(*sent_to(client, servers, requests)))


async def scalar(engine: AsyncEngine, statement: Any) -> Any:
    async with engine.connect() as connection:
        return (await connection.execute(statement)).scalar_one()


async def create_payment(server: str, gateway_id: str, user_id: int) -> httpx.Response:
    """A pending USD 10.00 payment of `user_id`, created through `server`."""
    async with httpx.AsyncClient() as client:
        return await client.post(
            server + "/api/v1/payments/",
            json={"payment_id": gateway_id, "provider": "stripe", "currency": "USD", "amount_total": "10"},
            headers=headers_for(user_id),
        )


async def lock_waiters(engine: AsyncEngine) -> int:
    """Backends of this database waiting for a lock (pg_stat_activity)."""
    return int(await scalar(engine, text(databases.LOCK_WAITERS)))


async def fire_at_barrier(
    engine: AsyncEngine, barrier: str, servers: list[str], requests: Sequence[Request], waiters: int | None = None
) -> list[httpx.Response]:
    """A barrier inside PostgreSQL: the test runs `barrier` (a statement taking a lock the requests
    need) in a transaction, sends every request, and lets go (rolls back) only when `waiters` (all,
    by default) of them wait on a lock, so they are proven to overlap; then they race."""
    waiters = len(requests) if waiters is None else waiters
    async with engine.connect() as holder:
        async with holder.begin() as transaction:
            await holder.execute(text(barrier))
            sent = asyncio.create_task(fire(servers, requests))
            try:
                deadline = asyncio.get_running_loop().time() + 10
                while (waiting := await lock_waiters(engine)) < waiters:
                    assert not sent.done(), "the requests finished while the barrier held"
                    assert asyncio.get_running_loop().time() < deadline, f"only {waiting} of {waiters} overlapped"
                    await asyncio.sleep(0.02)
            except BaseException:
                sent.cancel()
                raise
            await transaction.rollback()
    return await sent


async def fire_at_row_lock(
    engine: AsyncEngine, payment_id: int, servers: list[str], requests: Sequence[Request]
) -> list[httpx.Response]:
    """The racing requests wait for the payment's row lock, held by the test."""
    barrier = f"SELECT 1 FROM payments WHERE id = {int(payment_id)} FOR UPDATE"
    return await fire_at_barrier(engine, barrier, servers, requests)


async def test_racing_status_moves_leave_exactly_one_winner(servers: list[str], live_db: AsyncEngine) -> None:
    created = await create_payment(servers[0], "pi_race", 1)
    assert created.status_code == 201
    payment_id = created.json()["id"]
    targets = ["succeeded", "canceled"] * 10
    responses = await fire_at_row_lock(
        live_db,
        payment_id,
        servers,
        [
            ("PATCH", f"/api/v1/payments/{payment_id}/status", {"payment_status": target}, headers_for(2, service=True))
            for target in targets
        ],
    )
    final = await scalar(live_db, select(Payment.payment_status).where(Payment.id == payment_id))
    by_target: dict[str, Counter[int]] = {"succeeded": Counter(), "canceled": Counter()}
    for target, response in zip(targets, responses, strict=True):
        by_target[target][response.status_code] += 1
    winner, loser = (final.value, "canceled" if final.value == "succeeded" else "succeeded")
    assert by_target[winner] == Counter({200: 10}), by_target
    assert by_target[loser] == Counter({409: 10}), by_target
    assert {r.json()["payment_status"] for r in responses if r.status_code == 200} == {winner}
    history = await scalar(
        live_db,
        select(func.count()).select_from(PaymentStatusHistory).where(PaymentStatusHistory.payment_id == payment_id),
    )
    assert history == 2  # creation + exactly one transition
    assert await scalar(live_db, select(Payment.version).where(Payment.id == payment_id)) == 2


async def test_two_puts_with_one_if_match_leave_one_winner(servers: list[str], live_db: AsyncEngine) -> None:
    """Two owners' edits read version 1 and send it back: the first to get the row wins, the other
    gets 412 and changes nothing (no lost update), although both were waiting at the same moment."""
    created = await create_payment(servers[0], "pi_if_match_race", 3)
    payment_id = created.json()["id"]
    headers = {**headers_for(3), "If-Match": created.headers["etag"]}
    edits = ["from the first tab", "from the second tab"]
    responses = await fire_at_row_lock(
        live_db,
        payment_id,
        servers,
        [("PUT", f"/api/v1/payments/{payment_id}", {"description": edit}, headers) for edit in edits],
    )
    assert sorted(response.status_code for response in responses) == [200, 412], [r.text for r in responses]
    winner = next(response for response in responses if response.status_code == 200)
    assert winner.headers["etag"] == '"2"'
    stored = await scalar(live_db, select(Payment.description).where(Payment.id == payment_id))
    assert stored == winner.json()["description"]
    assert await scalar(live_db, select(Payment.version).where(Payment.id == payment_id)) == 2


async def test_a_key_in_flight_in_one_process_is_a_409_in_the_other(servers: list[str], live_db: AsyncEngine) -> None:
    """Ten status moves with one Idempotency-Key over two processes, while the test holds the
    payment's row lock: the first claims the key and waits for the lock; the nine others, in both
    processes, find the key in flight (409) without waiting. Released, the first moves the payment,
    and a retry with the key replays its answer."""
    created = await create_payment(servers[0], "pi_key_in_flight", 6)
    payment_id = created.json()["id"]
    headers = {**headers_for(6, service=True), "Idempotency-Key": "move-once"}
    path = f"/api/v1/payments/{payment_id}/status"
    async with httpx.AsyncClient(timeout=30) as client:
        async with live_db.connect() as holder, holder.begin():
            await holder.execute(text("SELECT 1 FROM payments WHERE id = :id FOR UPDATE"), {"id": payment_id})
            moves = [
                asyncio.create_task(client.patch(base + path, json={"payment_status": "succeeded"}, headers=headers))
                for base in [*servers] * 5
            ]
            deadline = asyncio.get_running_loop().time() + 10
            while sum(move.done() for move in moves) < 9 or await lock_waiters(live_db) < 1:
                assert asyncio.get_running_loop().time() < deadline, [move.done() for move in moves]
                await asyncio.sleep(0.02)
            in_flight = [move.result() for move in moves if move.done()]
            waiting = next(move for move in moves if not move.done())
        moved = await waiting
        replayed = await client.patch(servers[1] + path, json={"payment_status": "succeeded"}, headers=headers)
    assert [response.status_code for response in in_flight] == [409] * 9
    assert {response.json()["type"] for response in in_flight} == {"/problems/idempotency-key-in-flight"}
    assert all(response.headers["retry-after"] == "1" for response in in_flight)
    winner_server = moves.index(waiting) % 2
    assert sum(1 for move in moves if move is not waiting and moves.index(move) % 2 != winner_server) == 5
    assert (moved.status_code, moved.json()["payment_status"]) == (200, "succeeded")
    assert replayed.headers.get("idempotent-replayed") == "true" and replayed.content == moved.content
    history = (
        select(func.count()).select_from(PaymentStatusHistory).where(PaymentStatusHistory.payment_id == payment_id)
    )
    assert await scalar(live_db, history) == 2


async def test_fifty_creates_with_one_key_make_one_payment(servers: list[str], live_db: AsyncEngine) -> None:
    body = {"payment_id": "pi_idem_race", "provider": "stripe", "currency": "USD", "amount_total": "25.00"}
    headers = {**headers_for(7), "Idempotency-Key": "race-key"}
    # The test inserts the same key first, uncommitted: every claim waits on the unique index. Each
    # server claims on at most DB_POOL_SIZE + DB_MAX_OVERFLOW (20) connections at once, so 40 wait.
    barrier = (
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, state, expires_at) "
        "VALUES (7, 'race-key', 'barrier', 'in_flight', now() + interval '1 hour')"
    )
    responses = await fire_at_barrier(
        live_db, barrier, servers, [("POST", "/api/v1/payments/", body, headers)] * 50, waiters=40
    )

    statuses = Counter(response.status_code for response in responses)
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[409] >= 1, f"no request found the key in flight: {statuses}"
    created = [response for response in responses if response.status_code == 201]
    assert created, statuses
    assert sum(response.headers.get("idempotent-replayed") != "true" for response in created) == 1
    assert len({response.content for response in created}) == 1
    assert all(r.json()["type"].endswith("/idempotency-key-in-flight") for r in responses if r.status_code == 409)
    assert await scalar(live_db, select(func.count()).select_from(Payment)) == 1
    assert await scalar(live_db, select(func.count()).select_from(IdempotencyKey)) == 1


async def test_fifty_different_creates_with_one_key_still_make_one_payment(
    servers: list[str], live_db: AsyncEngine
) -> None:
    headers = {**headers_for(8), "Idempotency-Key": "race-key-bodies"}
    requests = [
        (
            "POST",
            "/api/v1/payments/",
            {"payment_id": f"pi_body_{n}", "provider": "stripe", "currency": "USD", "amount_total": "5"},
            headers,
        )
        for n in range(50)
    ]
    responses = await fire(servers, requests)
    statuses = Counter(response.status_code for response in responses)
    assert set(statuses) <= {201, 409, 422}, statuses
    assert statuses[201] == 1, statuses
    assert await scalar(live_db, select(func.count()).select_from(Payment)) == 1
    winner = next(r for r in responses if r.status_code == 201).json()["payment_id"]
    assert await scalar(live_db, select(Payment.payment_id)) == winner


async def test_one_event_delivered_to_both_processes_at_once_is_applied_once(
    servers: list[str], live_db: AsyncEngine
) -> None:
    async with httpx.AsyncClient() as client:
        created = await client.post(
            servers[0] + "/api/v1/payments/",
            json={
                "payment_id": "pi_3QcsPaymentIntent",
                "provider": "stripe",
                "currency": "USD",
                "amount_total": "99.99",
            },
            headers=headers_for(1),
        )
    assert created.status_code == 201
    payload = encode(stripe_event("payment_intent.succeeded", "evt_race"))
    headers = signed_headers(payload, STRIPE_SECRET)
    payment_id = created.json()["id"]
    responses = await fire_at_row_lock(
        live_db, payment_id, servers, [("POST", "/api/v1/webhooks/stripe", payload, headers)] * 10
    )
    assert [r.status_code for r in responses] == [200] * 10
    assert sorted(r.json()["duplicate"] for r in responses) == [False] + [True] * 9
    assert {r.json()["outcome"] for r in responses} == {"applied"}
    transitions = (
        select(func.count())
        .select_from(PaymentStatusHistory)
        .where(PaymentStatusHistory.payment_id == payment_id, PaymentStatusHistory.event_id == "evt_race")
    )
    assert await scalar(live_db, transitions) == 1
    assert await scalar(live_db, select(WebhookEvent.delivery_count)) == 10
    assert await scalar(live_db, select(Payment.payment_status)) == PaymentStatus.SUCCEEDED
