"""Logs and metrics as a real server process writes them: its JSON log lines parsed from its output,
and its /metrics read over HTTP. Every line of a request carries that request's X-Request-ID, and
no line carries a bearer token, an e-mail address or a body, on the paths where they would leak."""

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import databases
from tests.conftest import STRIPE_SECRET, TEST_SECRET
from tests.live import free_port, uvicorn_servers
from tests.stripe_events import encode, sign, stripe_event
from tests.test_races import headers_for

pytestmark = pytest.mark.slow

EMAIL = "guest.private@example.org"
FORGED_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI5In0.forged-signature-never-logged"
SECRET_WORDS = (FORGED_TOKEN, "forged-signature", EMAIL, "guest.private", "Bearer ")


@pytest.fixture(scope="module")
def logs_database_url(server_url: str) -> Iterator[str]:
    with databases.migrated_database(server_url, "logs") as url:
        yield url


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def lines_of(lines: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("request_id") == request_id]


def rename(url: str, table: str, to: str) -> None:
    asyncio.run(databases.execute(url, f"ALTER TABLE {table} RENAME TO {to}"))


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{key}="{value}"' in (match.group(1) or "") for key, value in labels.items()):
            return float(match.group(2))
    raise AssertionError(f"no sample {name} {labels} in /metrics")


def test_request_ids_on_every_line_and_no_secrets_in_the_logs(logs_database_url: str) -> None:
    env = {
        "DATABASE_URL": logs_database_url,
        "SECRET_KEY": TEST_SECRET,
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "LOG_LEVEL": "INFO",
    }
    user = headers_for(4)  # one token, to look for in the logs
    dead = {**env, "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none"}
    with uvicorn_servers(1, env) as [server], uvicorn_servers(1, dead) as [down]:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            unauthorized = client.get(
                "/api/v1/payments/1", headers={"Authorization": f"Bearer {FORGED_TOKEN}", "X-Request-ID": "req-401"}
            )
            invalid = client.post(
                "/api/v1/payments/",
                json={"payment_id": "pi_logs", "provider": "stripe", "currency": "USD", "amount_total": "1.001"}
                | {"customer_email": EMAIL},
                headers={**user, "X-Request-ID": "req-422"},
            )
            created = client.post(
                "/api/v1/payments/",
                json={"payment_id": "pi_logs", "provider": "stripe", "currency": "USD", "amount_total": "12.00"}
                | {"customer_email": EMAIL},
                headers={**user, "X-Request-ID": "req-201"},
            )
            payload = encode(
                stripe_event("payment_intent.succeeded", "evt_logs", id="pi_logs", amount=1200, amount_received=1200)
                | {"receipt_email": EMAIL}
            )
            webhook = client.post(
                "/api/v1/webhooks/stripe",
                content=payload,
                headers={"Stripe-Signature": sign(payload, STRIPE_SECRET), "X-Request-ID": "req-webhook"},
            )
            forged_webhook = client.post(
                "/api/v1/webhooks/stripe",
                content=payload,
                headers={"Stripe-Signature": sign(payload, "whsec_forged"), "X-Request-ID": "req-webhook-400"},
            )
            metrics = client.get("/metrics").text
            # A bug, for real: the history table is gone, so a create fails in PostgreSQL (42P01),
            # which is not "unavailable": a 500 whose traceback is logged, with nothing of the request.
            rename(logs_database_url, "payment_status_history", "history_moved_away")
            try:
                broken = client.post(
                    "/api/v1/payments/",
                    json={"payment_id": "pi_500", "provider": "stripe", "currency": "USD", "amount_total": "3.00"}
                    | {"customer_email": EMAIL},
                    headers={**user, "X-Request-ID": "req-500"},
                )
            finally:
                rename(logs_database_url, "history_moved_away", "payment_status_history")
        unavailable = httpx.get(
            f"{down.url}/api/v1/payments/1", headers={**user, "X-Request-ID": "req-503"}, timeout=10
        )
        answers = [unauthorized, invalid, created, webhook, forged_webhook, unavailable, broken]
        assert [response.status_code for response in answers] == [401, 422, 201, 200, 400, 503, 500]
        assert broken.json()["detail"] == "An unexpected error occurred."
        # The access line is written once the response has gone out: wait (bounded) until each is there.
        ids = ("req-401", "req-422", "req-201", "req-webhook", "req-webhook-400", "req-503", "req-500")
        deadline = time.monotonic() + 10
        while True:
            raw = "\n".join(s.log_path.read_text() for s in (server, down))  # plain-text lines are searched too
            lines = json_lines(raw)
            logged = {line.get("request_id") for line in lines if line.get("logger") == "app.access"}
            if set(ids) <= logged or time.monotonic() > deadline:
                break
            time.sleep(0.05)

    for request_id, response in zip(
        ("req-401", "req-422", "req-201", "req-webhook", "req-webhook-400", "req-503", "req-500"), answers, strict=True
    ):
        assert response.headers["x-request-id"] == request_id
        own = lines_of(lines, request_id)
        access = [line for line in own if line.get("status") == response.status_code]
        assert access, f"no access line with request_id {request_id}: {own}"
    assert any(
        line["level"] == "WARNING" and "database unavailable" in line["message"] for line in lines_of(lines, "req-503")
    )
    errors = [line for line in lines_of(lines, "req-500") if line["level"] == "ERROR"]
    assert errors and "UndefinedTable" in json.dumps(errors), errors  # the traceback is there
    for line in lines:
        text = json.dumps(line)
        for word in (*SECRET_WORDS, user["Authorization"].removeprefix("Bearer ")):
            assert word not in text, f"{word!r} logged: {text}"
    for word in (*SECRET_WORDS, user["Authorization"].removeprefix("Bearer ")):
        assert word not in raw, f"{word!r} in the servers' output"
        assert "amount_total" not in text and "receipt_email" not in text, f"a body logged: {text}"

    assert metric(metrics, "http_requests_total", method="POST", status="201") >= 1
    assert metric(metrics, "http_requests_total", status="401") >= 1
    assert metric(metrics, "webhook_events_total", provider="stripe", outcome="applied") == 1
    assert metric(metrics, "payments_created_total", provider="stripe", currency="USD") == 1
    assert metric(metrics, "db_pool_max") == 20  # DB_POOL_SIZE + DB_MAX_OVERFLOW, the defaults
    assert metric(metrics, "db_pool_size") >= 1
    assert metric(metrics, "db_gate_waiting") == 0
