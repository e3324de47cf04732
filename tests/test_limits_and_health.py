from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.database import Database
from app.main import attach_database, create_app
from tests.conftest import TokenFactory
from tests.helpers import assert_problem, payment_count
from tests.live import free_port

PAYMENTS = "/api/v1/payments/"


async def test_readiness_says_ready_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert (response.status_code, response.json()) == (200, {"status": "ready"})


async def test_a_body_over_64_kib_is_413_and_nothing_is_written(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    body = {
        "payment_id": "pi_big",
        "provider": "stripe",
        "currency": "USD",
        "amount_total": "1",
        "description": "x" * (65 * 1024),
    }
    response = await client.post(PAYMENTS, json=body, headers=auth(1))
    assert_problem(response, 413, "/payload-too-large")
    assert await payment_count(db) == 0


async def test_a_streamed_body_over_the_limit_is_413(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"payment_id": "pi_stream", "description": "'
        for _ in range(70):
            yield b"y" * 1024
        yield b'"}'

    headers = {**auth(1), "Content-Type": "application/json"}
    response = await client.post(PAYMENTS, content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)
    assert await payment_count(db) == 0


async def test_a_body_just_under_the_limit_is_read(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    body = {"payment_id": "pi_ok", "provider": "stripe", "currency": "USD", "amount_total": "1", "pad": "z" * 60000}
    assert_problem(await client.post(PAYMENTS, json=body, headers=auth(1)), 422)  # parsed, then refused


@pytest.fixture
async def app_without_database(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app pointed at a port where nothing listens, as when PostgreSQL is down."""
    dead = settings.model_copy(
        update={
            "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none",
            "db_connect_timeout_seconds": 0.5,
        }
    )
    app = create_app(dead)
    database = await Database.connect(dead)
    attach_database(app, database)
    yield app
    await database.close()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/payments/1", None),
        ("GET", PAYMENTS, None),
        ("POST", PAYMENTS, {"payment_id": "pi_x", "provider": "stripe", "currency": "USD", "amount_total": "1"}),
        ("PATCH", "/api/v1/payments/1/status", {"payment_status": "failed"}),
    ],
)
async def test_without_a_database_requests_fail_fast_with_503(
    app_without_database: FastAPI, auth: TokenFactory, method: str, path: str, body: dict[str, Any] | None
) -> None:
    transport = httpx.ASGITransport(app=app_without_database)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.request(method, path, json=body, headers=auth(1, service=True))
        problem = assert_problem(response, 503, "/database-unavailable")
        assert response.headers["retry-after"] == "2"
        assert "Traceback" not in str(problem) and "asyncpg" not in response.text
        assert (await client.get("/health")).status_code == 200
        assert_problem(await client.get("/health/ready"), 503, "/database-unavailable")


@pytest.mark.parametrize(
    "field",
    [{"description": "a\x00b"}, {"booking_id": "b\x00"}, {"metadata": {"k\x00": "v"}}, {"metadata": {"k": "\x00"}}],
)
async def test_a_nul_character_in_a_body_is_422_and_nothing_is_written(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, field: dict[str, Any]
) -> None:
    """PostgreSQL text and jsonb cannot store NUL: refused up front, never a database error (500)."""
    body = {"payment_id": "pi_nul", "provider": "stripe", "currency": "USD", "amount_total": "1.00", **field}
    assert_problem(await client.post(PAYMENTS, json=body, headers=auth(1)), 422)
    assert await payment_count(db) == 0


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (PAYMENTS, {"booking_id": "b\x00"}),
        (PAYMENTS, {"property_id": "\x00"}),
        (PAYMENTS, {"metadata[k]": "\x00"}),
        (PAYMENTS, {"metadata[k\x00]": "v"}),
        (f"{PAYMENTS}booking/b%00", {}),
    ],
)
async def test_a_nul_character_in_a_filter_or_path_is_422(
    client: httpx.AsyncClient, auth: TokenFactory, path: str, params: dict[str, str]
) -> None:
    assert_problem(await client.get(path, params=params, headers=auth(1)), 422)
