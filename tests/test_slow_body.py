"""The slow-body attack of the security review, against a real server process: clients that send
headers announcing a body and then nothing must not stall anyone else's requests, and get a 408
after REQUEST_BODY_TIMEOUT_SECONDS; a client that leaves mid-body costs one INFO line."""

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests import databases
from tests.conftest import STRIPE_SECRET, TEST_SECRET
from tests.live import LiveServer, uvicorn_servers
from tests.test_races import headers_for

pytestmark = pytest.mark.slow

POOL_SIZE = 2
IDLE_CLIENTS = POOL_SIZE + 2
BODY_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def server(server_url: str) -> Iterator[LiveServer]:
    with databases.migrated_database(server_url, "slow_body") as url:
        env = {
            "DATABASE_URL": url,
            "SECRET_KEY": TEST_SECRET,
            "ENVIRONMENT": "test",
            "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
            "DB_POOL_SIZE": str(POOL_SIZE),
            "DB_MAX_OVERFLOW": "1",
            "REQUEST_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
            "LOG_LEVEL": "INFO",
        }
        with uvicorn_servers(1, env) as [live]:
            yield live


async def open_without_body(base_url: str, head: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.encode())
    await writer.drain()
    return reader, writer


def announced(method: str, path: str, headers: dict[str, str]) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", "Content-Length: 1000"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


@pytest.mark.parametrize("route", ["webhook", "delete with a key"])
async def test_idle_bodies_stall_no_one_and_get_408(server: LiveServer, route: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        victim = await client.post(
            "/api/v1/payments/",
            json={"payment_id": f"pi_victim_{route[0]}", "provider": "stripe", "currency": "USD", "amount_total": "5"},
            headers=headers_for(42),
        )
        assert victim.status_code == 201, victim.text
        attacker = await client.post(
            "/api/v1/payments/",
            json={
                "payment_id": f"pi_attacker_{route[0]}",
                "provider": "stripe",
                "currency": "USD",
                "amount_total": "5",
            },
            headers=headers_for(66),
        )
        if route == "webhook":
            head = announced("POST", "/api/v1/webhooks/stripe", {"Stripe-Signature": "t=1,v1=00"})
        else:
            path = f"/api/v1/payments/{attacker.json()['id']}"
            head = announced("DELETE", path, {**headers_for(66), "Idempotency-Key": "slow"})
        idle = [await open_without_body(server.url, head) for _ in range(IDLE_CLIENTS)]
        try:
            await asyncio.sleep(0.3)  # the idle requests are in the server now
            started = time.monotonic()
            read = await client.get(f"/api/v1/payments/{victim.json()['id']}", headers=headers_for(42))
            seconds = time.monotonic() - started
            assert (read.status_code, seconds < 2) == (200, True), (read.status_code, seconds, read.text)
            ready = await client.get("/health/ready")
            assert ready.status_code == 200, ready.text  # the truth: the database is fine

            answers = await asyncio.wait_for(asyncio.gather(*(reader.read(2000) for reader, _ in idle)), 5)
            for answer in answers:
                assert answer.startswith(b"HTTP/1.1 408 "), answer
                assert b"application/problem+json" in answer
        finally:
            for _, writer in idle:
                writer.close()
        unchanged = await client.get(f"/api/v1/payments/{attacker.json()['id']}", headers=headers_for(66))
        assert unchanged.json()["payment_status"] == "pending"


async def test_a_client_that_leaves_mid_body_costs_one_info_line(server: LiveServer) -> None:
    _, writer = await open_without_body(server.url, announced("POST", "/api/v1/payments/", headers_for(7)) + "{")
    await asyncio.sleep(0.3)
    writer.close()
    await asyncio.sleep(0.5)
    log = server.log_path.read_text()
    assert "client disconnected before sending its whole body" in log
    assert "Traceback" not in log and "ClientDisconnect" not in log and "ERROR" not in log, log[-3000:]
