"""The service behind PgBouncer in transaction mode (how most teams scale PostgreSQL connections):
with DB_PGBOUNCER=true it must work there. Uses Debian's pgbouncer (installed by .ci/run)."""

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests import databases
from tests import pgbouncer as bouncer
from tests.conftest import TEST_SECRET
from tests.live import PROJECT_ROOT, uvicorn_servers
from tests.test_races import headers_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not bouncer.available(), reason="pgbouncer is not installed (apt-get install pgbouncer)"),
]

API_TEST_MODULES = [
    "tests/test_create.py",
    "tests/test_read.py",
    "tests/test_list.py",
    "tests/test_cursor.py",
    "tests/test_update.py",
    "tests/test_status.py",
    "tests/test_idempotency.py",
    "tests/test_concurrency_controls.py",
    "tests/test_webhooks.py",
]


def test_the_api_tests_pass_through_pgbouncer() -> None:
    """Runs the API test modules again with the app's and the tests' connections going through
    PgBouncer (see VIA_PGBOUNCER in conftest.py)."""
    if os.environ.get("TEST_VIA_PGBOUNCER") == "1":
        pytest.skip("already running through PgBouncer")
    result = subprocess.run(  # noqa: S603 - our own test run
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *API_TEST_MODULES],
        cwd=PROJECT_ROOT,
        env={**os.environ, "TEST_VIA_PGBOUNCER": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-10000:] + result.stderr[-3000:]
    assert " passed" in result.stdout.splitlines()[-1]


@pytest.fixture(scope="module")
def pgbouncer_database(server_url: str) -> Iterator[str]:
    with databases.migrated_database(server_url, "pgbouncer") as url, bouncer.pgbouncer_in_front_of(url) as through:
        yield through


async def test_concurrent_traffic_through_pgbouncer(pgbouncer_database: str) -> None:
    """Real transactions from a real server, many at once, so PgBouncer hands them to different
    server connections: prepared statements would collide or vanish here without DB_PGBOUNCER."""
    env = {"DATABASE_URL": pgbouncer_database, "DB_PGBOUNCER": "true", "SECRET_KEY": TEST_SECRET}
    with uvicorn_servers(1, env) as [server]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:

            async def journey(n: int) -> list[int]:
                headers = headers_for(n % 7 + 1)
                created = await client.post(
                    "/api/v1/payments/",
                    json={
                        "payment_id": f"pi_bouncer_{n}",
                        "provider": "stripe",
                        "currency": "USD",
                        "amount_total": "5",
                    },
                    headers={**headers, "Idempotency-Key": f"bouncer-{n}"},
                )
                payment = created.json()["id"]
                statuses = [created.status_code]
                statuses.append((await client.get(f"/api/v1/payments/{payment}", headers=headers)).status_code)
                statuses.append((await client.get("/api/v1/payments/?size=5", headers=headers)).status_code)
                moved = await client.patch(
                    f"/api/v1/payments/{payment}/status",
                    json={"payment_status": "succeeded"},
                    headers=headers_for(100, service=True),  # the gateway's outcome: a backend records it
                )
                statuses.append(moved.status_code)
                return statuses

            results = await asyncio.gather(*(journey(n) for n in range(60)))
    assert Counter(status for statuses in results for status in statuses) == Counter({201: 60, 200: 180})
