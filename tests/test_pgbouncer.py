"""The service behind PgBouncer in transaction mode (how most teams scale PostgreSQL connections):
with DB_PGBOUNCER=true it must work there. Two real server processes share fewer PostgreSQL server
connections than they open client connections, so PgBouncer hands each transaction to whichever
server connection is free: a statement prepared on one connection and run on another, or the parts
of one piece of work split across two, fail here. Uses Debian's pgbouncer (installed by .ci/run)."""

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests import databases, require
from tests import pgbouncer as bouncer
from tests.conftest import STRIPE_SECRET, TEST_SECRET
from tests.live import uvicorn_servers
from tests.stripe_events import encode, signed_headers, stripe_event
from tests.test_races import headers_for

pytestmark = pytest.mark.slow

SERVER_CONNECTIONS = 3  # PgBouncer's pool: fewer than the two servers' 2 × 6 client connections


@pytest.fixture(autouse=True)
def _pgbouncer_installed() -> None:
    require(bouncer.available(), "pgbouncer is not installed: apt-get install pgbouncer (.ci/run does)")


@pytest.fixture(scope="module")
def pgbouncer_database(server_url: str) -> Iterator[str]:
    with (
        databases.migrated_database(server_url, "pgbouncer") as url,
        bouncer.pgbouncer_in_front_of(url, server_connections=SERVER_CONNECTIONS) as through,
    ):
        yield through


async def test_concurrent_traffic_through_pgbouncer(pgbouncer_database: str) -> None:
    """60 journeys at once over two processes: create with an Idempotency-Key and its replay, read,
    list, a Stripe webhook or a service's status move, and two concurrent moves of one payment."""
    env = {
        "DATABASE_URL": pgbouncer_database,
        "DB_PGBOUNCER": "true",
        "DB_POOL_SIZE": "4",
        "DB_MAX_OVERFLOW": "2",
        "SECRET_KEY": TEST_SECRET,
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "USER_WRITE_LIMIT_PER_MINUTE": "0",
        # 60 journeys share 3 server connections: on a busy machine a request may wait its turn
        # longer than the production deadlines, and this test is about correctness, not latency.
        "DB_POOL_TIMEOUT_SECONDS": "15",
        "DB_REQUEST_TIMEOUT_SECONDS": "15",
        "DB_STATEMENT_TIMEOUT_SECONDS": "15",
        "IDEMPOTENCY_LOCK_TIMEOUT_SECONDS": "30",
    }
    backend = headers_for(100, service=True)
    with uvicorn_servers(2, env) as servers:
        async with httpx.AsyncClient(timeout=30) as client:

            async def journey(n: int) -> list[tuple[str, int]]:
                here, there = servers[n % 2].url, servers[(n + 1) % 2].url
                user = headers_for(n % 7 + 1)
                body = {"payment_id": f"pi_bouncer_{n}", "provider": "stripe", "currency": "USD", "amount_total": "5"}
                keyed = {**user, "Idempotency-Key": f"bouncer-{n}"}
                created = await client.post(f"{here}/api/v1/payments/", json=body, headers=keyed)
                replayed = await client.post(f"{there}/api/v1/payments/", json=body, headers=keyed)
                assert replayed.headers.get("idempotent-replayed") == "true", replayed.text
                assert replayed.json()["id"] == created.json()["id"]
                payment = f"/api/v1/payments/{created.json()['id']}"
                answers = [("create", created.status_code)]
                answers.append(("read", (await client.get(f"{there}{payment}", headers=user)).status_code))
                answers.append(
                    ("list", (await client.get(f"{here}/api/v1/payments/?size=5", headers=user)).status_code)
                )
                if n % 2:
                    payload = encode(
                        stripe_event(
                            "payment_intent.succeeded",
                            f"evt_bouncer_{n}",
                            id=f"pi_bouncer_{n}",
                            amount=500,
                            amount_received=500,
                        )
                    )
                    delivered = await client.post(
                        f"{here}/api/v1/webhooks/stripe",
                        content=payload,
                        headers=signed_headers(payload, STRIPE_SECRET),
                    )
                    answers.append(("webhook", delivered.status_code))
                    assert delivered.json()["outcome"] == "applied", delivered.text
                else:
                    moved = await client.patch(
                        f"{here}{payment}/status", json={"payment_status": "succeeded"}, headers=backend
                    )
                    answers.append(("move", moved.status_code))
                # Another payment, moved two ways from both processes (whether or not they overlap, one wins).
                other = {**body, "payment_id": f"pi_bouncer_race_{n}"}
                raced = (await client.post(f"{here}/api/v1/payments/", json=other, headers=user)).json()["id"]
                race = await asyncio.gather(
                    *(
                        client.patch(
                            f"{server.url}/api/v1/payments/{raced}/status",
                            json={"payment_status": target},
                            headers=backend,
                        )
                        for server, target in zip(servers, ("succeeded", "canceled"), strict=True)
                    )
                )
                answers.append(("race", sorted(response.status_code for response in race) == [200, 409]))
                return answers

            results = await asyncio.gather(*(journey(n) for n in range(60)))
            read_back = [
                (await client.get(f"{servers[0].url}/api/v1/payments/payment-gateway/pi_bouncer_{n}", headers=backend))
                for n in range(60)
            ]

    answers = Counter(answer for journey in results for answer in journey)
    assert answers == Counter(
        {("create", 201): 60, ("read", 200): 60, ("list", 200): 60, ("webhook", 200): 30, ("move", 200): 30}
        | {("race", True): 60}
    ), answers
    assert {payment.json()["payment_status"] for payment in read_back} == {"succeeded"}
