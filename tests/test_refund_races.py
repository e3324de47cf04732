"""Refunds racing across two real server processes on one database: whatever arrives at once, a
payment never gives back more than was paid, and its sums, status and refunds always agree. Every
request really commits here, so these tests have a database of their own."""

import asyncio
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests import databases
from tests.conftest import STRIPE_SECRET
from tests.helpers import REFUND_INVARIANT_BROKEN
from tests.live import uvicorn_servers
from tests.stripe_events import encode, signed_headers, stripe_event
from tests.test_races import Request, headers_for, racing_env, sent_to

pytestmark = pytest.mark.slow

SERVICE = 70  # the backend recording payments and refunds (service role)
PROBLEMS = "/problems/"


DB_POOL_SIZE = 10  # the default: the servers' env does not set it

# How long one burst of racing requests may take, barrier included, on a busy two-core machine.
BURST_DEADLINE = 60.0


@pytest.fixture(scope="module")
def live_database_url(server_url: str) -> Iterator[str]:
    with databases.migrated_database(server_url, "refund_races") as url:
        yield url


@pytest.fixture(scope="module")
def servers(live_database_url: str) -> Iterator[list[str]]:
    with uvicorn_servers(2, racing_env(live_database_url)) as live:
        yield [server.url for server in live]


def service() -> dict[str, str]:
    return headers_for(SERVICE, service=True)


def refunds_path(payment_id: int, refund_id: int | None = None) -> str:
    base = f"/api/v1/payments/{payment_id}/refunds"
    return base if refund_id is None else f"{base}/{refund_id}/status"


async def paid_payment(server: str, gateway_id: str, amount: str = "100.00") -> dict[str, Any]:
    """A succeeded USD payment, created through `server` by the service."""
    async with httpx.AsyncClient(timeout=30.0) as client:
        created = await client.post(
            server + "/api/v1/payments/",
            json={
                "payment_id": gateway_id,
                "provider": "stripe",
                "currency": "USD",
                "amount_total": amount,
                "payment_status": "succeeded",
            },
            headers=service(),
        )
    assert created.status_code == 201, created.text
    payment: dict[str, Any] = created.json()
    return payment


async def pending_refund(server: str, payment_id: int, amount: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30.0) as client:
        created = await client.post(server + refunds_path(payment_id), json={"amount": amount}, headers=service())
    assert created.status_code == 201, created.text
    refund: dict[str, Any] = created.json()
    return refund


async def lock_waiters(url: str) -> int:
    return int((await databases.rows(url, databases.LOCK_WAITERS))[0][0])


@dataclass(frozen=True)
class Burst:
    responses: list[httpx.Response]
    early: int  # answered while the test still held the payment's row lock


def can_wait(sent: list[asyncio.Task[httpx.Response]], processes: int) -> int:
    """How many of the requests not yet answered can be in PostgreSQL at once: in each process (the
    requests alternate between them), DB_POOL_SIZE at most."""
    return sum(min(DB_POOL_SIZE, sum(not task.done() for task in sent[n::processes])) for n in range(processes))


async def fire_while_locked(url: str, payment_id: int, servers: list[str], requests: Sequence[Request]) -> Burst:
    """Send all requests at once, alternating between the servers, while the test holds the
    payment's row lock; let go when every request not yet answered waits for a lock in PostgreSQL
    (as many as can: each process runs at most DB_POOL_SIZE units of work at once, the others wait
    in its FairGate and join the race as the first ones finish), so they provably overlap. Then they
    race. A request answered before the lock was let go (`early`) decided without the payment's lock."""
    engine = create_async_engine(url)
    limits = httpx.Limits(max_connections=200)
    try:
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client, engine.connect() as holder:
            async with holder.begin() as transaction:
                await holder.execute(text("SELECT 1 FROM payments WHERE id = :id FOR UPDATE"), {"id": payment_id})
                sent = [asyncio.ensure_future(request) for request in sent_to(client, servers, requests)]
                try:
                    while await lock_waiters(url) < can_wait(sent, len(servers)):
                        await asyncio.sleep(0.02)  # polling, bounded by the caller's deadline
                    early = sum(task.done() for task in sent)
                except BaseException:
                    for task in sent:
                        task.cancel()
                    raise
                await transaction.rollback()
            return Burst(list(await asyncio.gather(*sent)), early)
    finally:
        await engine.dispose()


async def assert_invariant(url: str) -> None:
    broken = await databases.rows(url, REFUND_INVARIANT_BROKEN)
    assert broken == [], broken


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    kind: str = response.json()["type"]
    assert kind.startswith(PROBLEMS), kind
    return kind.removeprefix(PROBLEMS)


async def test_twenty_refunds_of_sixty_on_one_hundred_leave_exactly_one(
    servers: list[str], live_database_url: str
) -> None:
    payment = await paid_payment(servers[0], "pi_refund_race_60")
    payment_id = payment["id"]
    requests: list[Request] = [("POST", refunds_path(payment_id), {"amount": "60.00"}, service())] * 20
    async with asyncio.timeout(BURST_DEADLINE):
        burst = await fire_while_locked(live_database_url, payment_id, servers, requests)
    responses = burst.responses

    statuses = Counter(response.status_code for response in responses)
    assert statuses == Counter({201: 1, 409: 19}), [response.text for response in responses]
    refused = [(n, r) for n, r in enumerate(responses) if r.status_code == 409]
    assert {n % 2 for n, _ in refused} == {0, 1}  # both processes refused some
    for _, response in refused:
        assert problem_type(response) == "refund-exceeds-refundable"
        assert response.json()["amount_refundable"] == "40.00"
    created = next(response.json() for response in responses if response.status_code == 201)
    assert (created["payment_id"], created["amount"], created["currency"], created["status"]) == (
        payment_id,
        "60.00",
        "USD",
        "pending",
    )

    stored = await databases.rows(
        live_database_url, "SELECT id, amount, status::text FROM refunds WHERE payment_id = :id", id=payment_id
    )
    assert [tuple(row) for row in stored] == [(created["id"], Decimal("60"), "pending")]
    sums = await databases.rows(
        live_database_url,
        "SELECT payment_status::text, amount_refunded, amount_refund_pending FROM payments WHERE id = :id",
        id=payment_id,
    )
    assert [tuple(row) for row in sums] == [("succeeded", Decimal(0), Decimal(60))]
    await assert_invariant(live_database_url)
    assert burst.early == 0  # each refused only after it had the payment's lock


AMOUNTS = ["0.01", "1.00", "7.50", "12.34", "20.00", "33.33", "45.00", "60.00", "75.00", "100.00", None]
FINAL = ["succeeded", "failed", "canceled"]
REASONS = [None, "requested_by_customer", "booking_canceled", "duplicate", "fraudulent", "other"]
# The 409s each kind of request may meet, whatever the others did first.
REFUSALS = {
    "refund": {"refund-exceeds-refundable", "payment-not-refundable", "duplicate-refund"},
    "settle": {"illegal-status-transition"},
    "refunded": {"refund-pending"},
}


@dataclass(frozen=True)
class Planned:
    kind: str  # refund (POST), settle (PATCH a seeded refund's status) or refunded (PATCH the payment)
    request: Request
    refund: int | None = None  # settle: the refund and the status asked for
    target: str | None = None


def mixed_requests(rng: random.Random, run: int, payment_id: int, pending: list[int]) -> list[Planned]:
    """30 requests of three kinds on one payment: new refunds (some of everything refundable, some
    already succeeded, some with a gateway id two of them may share), outcomes of its pending
    refunds, and moves of the payment to refunded."""
    planned: list[Planned] = []
    for _ in range(30):
        kind = rng.choices(["refund", "settle", "refunded"], weights=[12, 12, 6])[0]
        if kind == "refund":
            body: dict[str, Any] = {"status": rng.choice(["pending", "pending", "succeeded"])}
            amount = rng.choice(AMOUNTS)
            if amount is not None:
                body["amount"] = amount
            reason = rng.choice(REASONS)
            if reason is not None:
                body["reason"] = reason
            if rng.random() < 0.25:
                body["refund_id"] = f"re_mixed_{run}_{rng.randrange(3)}"
            planned.append(Planned(kind, ("POST", refunds_path(payment_id), body, service())))
        elif kind == "settle":
            refund, target = rng.choice(pending), rng.choice(FINAL)
            body = {"status": target}
            if target == "failed" and rng.random() < 0.5:
                body["failure_reason"] = "card expired"
            request: Request = ("PATCH", refunds_path(payment_id, refund), body, service())
            planned.append(Planned(kind, request, refund, target))
        else:
            path = f"/api/v1/payments/{payment_id}/status"
            planned.append(Planned(kind, ("PATCH", path, {"payment_status": "refunded"}, service())))
    return planned


async def test_mixed_refund_requests_keep_the_payment_consistent(servers: list[str], live_database_url: str) -> None:
    """20 runs, each a fresh payment with two pending refunds and 30 racing requests over both
    processes. Only 200, 201 and 409 are possible: no request sends If-Match (no 412) and every
    refund PATCHed belongs to the payment (no 404)."""
    rng = random.Random(20261204)  # noqa: S311 - reproducible test data, not secrets
    seen: Counter[tuple[str, int]] = Counter()
    for run in range(20):
        payment = await paid_payment(servers[run % 2], f"pi_mixed_race_{run}")
        payment_id = payment["id"]
        seeded = [
            await pending_refund(servers[0], payment_id, "10.00"),
            await pending_refund(servers[1], payment_id, "15.00"),
        ]
        planned = mixed_requests(rng, run, payment_id, [refund["id"] for refund in seeded])
        async with asyncio.timeout(BURST_DEADLINE):
            burst = await fire_while_locked(live_database_url, payment_id, servers, [p.request for p in planned])
        responses = burst.responses

        answered = list(zip(planned, responses, strict=True))
        answers = [(plan.kind, response.status_code) for plan, response in answered]
        seen.update(answers)
        unexpected = [
            (plan.kind, plan.request[2], response.status_code, response.text)
            for plan, response in answered
            if (plan.kind, response.status_code) not in {("refund", 201), ("settle", 200), ("refunded", 200)}
            and not (response.status_code == 409 and problem_type(response) in REFUSALS[plan.kind])
        ]
        assert unexpected == [], f"run {run}: {unexpected}"

        refunds = {
            row.id: row
            for row in await databases.rows(
                live_database_url,
                "SELECT id, amount, status::text, refund_id, reason::text, actor FROM refunds WHERE payment_id = :id",
                id=payment_id,
            )
        }
        # Each 201 is stored as it was answered; new refunds are never PATCHed, so they kept their status.
        created = [response.json() for response in responses if response.status_code == 201]
        for refund in created:
            row = refunds[refund["id"]]
            assert (row.amount, row.status, row.refund_id, row.reason) == (
                Decimal(refund["amount"]),
                refund["status"],
                refund["refund_id"],
                refund["reason"],
            ), f"run {run}"
        # A seeded refund reached the status of every 200 about it, and a 409 about it asked for
        # another status after it had reached its final one.
        for refund in seeded:
            final = refunds[refund["id"]].status
            outcomes = {
                (plan.target, response.status_code) for plan, response in answered if plan.refund == refund["id"]
            }
            assert {target for target, code in outcomes if code == 200} == ({final} if final != "pending" else set())
            refused = {target for target, code in outcomes if code == 409}
            assert final not in refused and (final != "pending" or not refused), (run, outcomes, final)
        # Refunds of the rest come only from a PATCH to refunded that was answered 200: at most one.
        rest = set(refunds) - {refund["id"] for refund in [*seeded, *created]}
        assert len(rest) <= 1, f"run {run}: {rest}"
        for refund_id in rest:
            assert refunds[refund_id].status == "succeeded" and refunds[refund_id].actor == f"service:{SERVICE}"
            assert ("refunded", 200) in answers
        status = await databases.rows(
            live_database_url, "SELECT payment_status::text FROM payments WHERE id = :id", id=payment_id
        )
        if ("refunded", 200) in answers:
            assert status[0][0] == "refunded", f"run {run}"
        await assert_invariant(live_database_url)
        # Every request, refusals included, decided on the payment as it was once it had its lock.
        assert burst.early == 0, f"run {run}: {burst.early} answered without waiting for the payment's lock"

    # The runs met every kind of answer: new refunds created and refused, outcomes applied and
    # refused, payments refunded; otherwise the races above proved less than they seem to.
    for answer in [("refund", 201), ("refund", 409), ("settle", 200), ("settle", 409), ("refunded", 200)]:
        assert seen[answer] > 0, seen


async def test_one_refund_event_delivered_ten_times_at_once_is_recorded_once(
    servers: list[str], live_database_url: str
) -> None:
    payment = await paid_payment(servers[1], "pi_refund_event_race")
    payment_id = payment["id"]
    event = stripe_event("charge.refunded", "evt_refund_race")
    event["type"] = "refund.created"
    event["data"] = {
        "object": {
            "id": "re_race",
            "object": "refund",
            "amount": 4000,
            "currency": "usd",
            "charge": "ch_refund_event_race",
            "payment_intent": "pi_refund_event_race",
            "reason": "requested_by_customer",
            "status": "succeeded",
            "metadata": {},
        }
    }
    payload = encode(event)
    headers = signed_headers(payload, STRIPE_SECRET)
    requests: list[Request] = [("POST", "/api/v1/webhooks/stripe", payload, headers)] * 10
    async with asyncio.timeout(BURST_DEADLINE):
        burst = await fire_while_locked(live_database_url, payment_id, servers, requests)
    responses = burst.responses

    assert [response.status_code for response in responses] == [200] * 10, [r.text for r in responses]
    assert sorted(response.json()["duplicate"] for response in responses) == [False] + [True] * 9
    assert {response.json()["outcome"] for response in responses} == {"applied"}
    refunds = await databases.rows(
        live_database_url,
        "SELECT payment_id, amount, currency, status::text, reason::text, actor FROM refunds "
        "WHERE refund_id = 're_race'",
    )
    assert [tuple(row) for row in refunds] == [
        (payment_id, Decimal(40), "USD", "succeeded", "requested_by_customer", "stripe")
    ]
    sums = await databases.rows(
        live_database_url,
        "SELECT payment_status::text, amount_refunded, amount_refund_pending FROM payments WHERE id = :id",
        id=payment_id,
    )
    assert [tuple(row) for row in sums] == [("succeeded", Decimal(40), Decimal(0))]
    recorded = await databases.rows(
        live_database_url,
        "SELECT delivery_count, outcome::text, payment_id FROM webhook_events WHERE event_id = 'evt_refund_race'",
    )
    assert [tuple(row) for row in recorded] == [(10, "applied", payment_id)]
    await assert_invariant(live_database_url)
    assert burst.early == 0
