import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.core.config import Settings
from app.core.database import Database
from app.core.logging import JsonFormatter, request_id_var
from app.core.metrics import POOL, REGISTRY
from app.repositories.health import database_answers
from tests.conftest import TokenFactory, make_payment

PAYMENTS = "/api/v1/payments/"


def sample(name: str, labels: dict[str, str]) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


@pytest.fixture
def settings_override(app: FastAPI) -> Iterator[dict[str, Any]]:
    """Change app settings for one test: mutate the returned dict before the request."""
    original = app.state.settings
    changes: dict[str, Any] = {}

    class Swap:
        def __getattr__(self, name: str) -> Any:
            return changes[name] if name in changes else getattr(original, name)

    app.state.settings = Swap()
    yield changes
    app.state.settings = original


async def test_one_structured_log_line_per_request(
    client: httpx.AsyncClient, auth: TokenFactory, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    payment = await make_payment(db, user_id=42)
    headers = {**auth(42), "X-Request-ID": "req-log-1"}
    with caplog.at_level(logging.INFO, logger="app.access"):
        response = await client.get(f"{PAYMENTS}{payment.id}", headers=headers)
    assert response.status_code == 200
    [record] = [r for r in caplog.records if r.name == "app.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "request"
    assert (line["method"], line["route"], line["status"], line["user_id"]) == (
        "GET",
        "/api/v1/payments/{id}",
        200,
        42,
    )
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["ts"].endswith("+00:00")


async def test_log_lines_of_a_request_carry_its_request_id(caplog: pytest.LogCaptureFixture) -> None:
    token = request_id_var.set("req-ctx")
    try:
        record = logging.LogRecord("app.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert (line["message"], line["request_id"]) == ("hello you", "req-ctx")


async def test_status_changes_are_logged_and_no_token_or_email_reaches_the_logs(
    client: httpx.AsyncClient, auth: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    headers = auth(5, service=True)
    with caplog.at_level(logging.DEBUG):
        created = await client.post(
            PAYMENTS,
            json={
                "payment_id": "pi_log",
                "provider": "stripe",
                "currency": "USD",
                "amount_total": "3",
                "customer_email": "secret.person@example.com",
            },
            headers={**headers, "X-Request-ID": "req-log-2"},
        )
        await client.patch(
            f"{PAYMENTS}{created.json()['id']}/status", json={"payment_status": "failed"}, headers=headers
        )
    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    changes = [line for line in lines if line["message"] == "payment status changed"]
    assert [(c["from_status"], c["to_status"], c["actor"]) for c in changes] == [("pending", "failed", "service:5")]
    text = "\n".join(json.dumps(line) for line in lines)
    token = headers["Authorization"].removeprefix("Bearer ")
    assert token not in text and "secret.person" not in text and "Bearer" not in text


async def test_metrics_count_requests_payments_and_transitions(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    route = {"method": "POST", "route": "/api/v1/payments/", "status": "201"}
    before = (
        sample("http_requests_total", route),
        sample("payments_created_total", {"provider": "paypal", "currency": "EUR"}),
        sample("payment_status_transitions_total", {"from_status": "pending", "to_status": "canceled"}),
    )
    created = await client.post(
        PAYMENTS,
        json={"payment_id": "pi_metrics", "provider": "paypal", "currency": "EUR", "amount_total": "3"},
        headers=auth(1),
    )
    await client.delete(f"{PAYMENTS}{created.json()['id']}", headers=auth(1))
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'http_requests_total{method="POST",route="/api/v1/payments/",status="201"}' in response.text
    assert 'http_request_duration_seconds_bucket{le="0.001",method="DELETE",route="/api/v1/payments/{id}"}' in (
        response.text
    )
    after = (
        sample("http_requests_total", route),
        sample("payments_created_total", {"provider": "paypal", "currency": "EUR"}),
        sample("payment_status_transitions_total", {"from_status": "pending", "to_status": "canceled"}),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]


async def test_unmatched_paths_share_one_label(client: httpx.AsyncClient) -> None:
    before = sample("http_requests_total", {"method": "GET", "route": "unmatched", "status": "404"})
    for path in ("/nope-1", "/nope-2"):
        await client.get(path)
    assert sample("http_requests_total", {"method": "GET", "route": "unmatched", "status": "404"}) == before + 2


async def test_metrics_can_be_turned_off(client: httpx.AsyncClient, settings_override: dict[str, Any]) -> None:
    settings_override["metrics_enabled"] = False
    assert (await client.get("/metrics")).status_code == 404


async def test_metrics_can_require_a_token(client: httpx.AsyncClient, settings_override: dict[str, Any]) -> None:
    settings_override["metrics_token"] = SecretStr("scrape-me")
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})).status_code == 200


async def test_metrics_are_closed_in_production_without_a_token(
    client: httpx.AsyncClient, settings_override: dict[str, Any]
) -> None:
    settings_override["environment"] = "production"
    closed = await client.get("/metrics")
    assert (closed.status_code, closed.headers["content-type"]) == (403, "application/problem+json")
    assert "METRICS_TOKEN" in closed.json()["detail"]
    settings_override["metrics_token"] = SecretStr("a-scraper-token-long-enough-for-prod")
    scraped = await client.get("/metrics", headers={"Authorization": "Bearer a-scraper-token-long-enough-for-prod"})
    assert scraped.status_code == 200


async def test_pool_usage_is_exported(settings: Settings) -> None:
    database = await Database.connect(settings)
    POOL.usage = database.pool_usage
    try:
        uow = database.unit_of_work()
        async with uow.transaction():
            assert await database_answers(uow)
            assert (sample("db_pool_checked_out", {}), sample("db_pool_size", {})) == (1, 1)
        assert (sample("db_pool_checked_out", {}), sample("db_pool_idle", {})) == (0, 1)
        assert sample("db_pool_max", {}) == settings.db_pool_size + settings.db_max_overflow
        assert sample("db_gate_waiting", {}) == 0
    finally:
        POOL.usage = lambda: None
        await database.close()
