"""The ambiguous commit: the statement that records a payment reaches PostgreSQL and commits, but
its acknowledgement is lost on the way back (tests/lossy_proxy.py cuts the connection). The client
gets a 503 and retries with the same Idempotency-Key: it must get the payment that exists, as a
replay — neither a second payment nor a 409 for its own gateway id."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests import databases
from tests.conftest import TEST_SECRET
from tests.live import uvicorn_servers
from tests.lossy_proxy import lossy_proxy
from tests.test_races import headers_for

pytestmark = pytest.mark.slow

BODY = {
    "payment_id": "PAYID-AMBIGUOUS",
    "provider": "paypal",
    "currency": "EUR",
    "amount_total": "77.70",
    "booking_id": "bk_ambiguous",
}


@pytest.fixture(scope="module")
def ambiguous_database_url(server_url: str) -> Iterator[str]:
    with databases.migrated_database(server_url, "ambiguous") as url:
        yield url


async def payments_of_the_booking(url: str) -> list[Any]:
    return await databases.rows(url, "SELECT id, user_id FROM payments WHERE booking_id = 'bk_ambiguous'")


async def test_a_retry_after_a_lost_acknowledgement_gets_the_one_payment(ambiguous_database_url: str) -> None:
    # The statement that writes the payment, its history and the key's stored response.
    async with lossy_proxy(ambiguous_database_url, marker=b"WITH claim AS") as proxy:
        through_proxy = make_url(ambiguous_database_url).set(host="127.0.0.1", port=proxy.port, query={})
        env = {"DATABASE_URL": through_proxy.render_as_string(hide_password=False), "SECRET_KEY": TEST_SECRET}
        with uvicorn_servers(1, env) as [server]:
            async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
                headers = {**headers_for(5), "Idempotency-Key": "ambiguous-1"}
                first = await client.post("/api/v1/payments/", json=BODY, headers=headers)
                assert proxy.answers_lost == 1, "the proxy cut the create's acknowledgement"
                assert first.status_code == 503, first.text
                assert first.headers["retry-after"]

                stored = await payments_of_the_booking(ambiguous_database_url)
                assert [user for _, user in stored] == [5], "the work committed although the client saw a 503"

                retry = await client.post("/api/v1/payments/", json=BODY, headers=headers)
                assert retry.status_code == 201, retry.text
                assert retry.headers.get("idempotent-replayed") == "true"
                assert retry.json()["id"] == stored[0][0]
                assert retry.json()["amount_total"] == "77.70"

    assert len(await payments_of_the_booking(ambiguous_database_url)) == 1
