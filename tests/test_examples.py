"""examples/api_usage.py, run as the README says, against a live server started here: it must exit 0
having done every step it shows, and fail (exit 1) when the server does not answer as it expects."""

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from app.core.config import Settings
from app.core.security import create_access_token
from tests import databases
from tests.conftest import TEST_SECRET
from tests.live import PROJECT_ROOT, free_port, uvicorn_servers

pytestmark = pytest.mark.slow

EXAMPLE = PROJECT_ROOT / "examples" / "api_usage.py"
# One line per step, in order: "ok  <status> <method> <path>  <step>".
EXPECTED_STEPS = [
    ("200", "GET", "/health", "service is up"),
    ("201", "POST", "/api/v1/payments/", "create a payment"),
    ("200", "GET", "/api/v1/payments/", "get it by id"),
    ("200", "GET", "/api/v1/payments/", "list pending stripe payments"),
    ("200", "PATCH", "/api/v1/payments/", "move to processing"),
    ("200", "PATCH", "/api/v1/payments/", "move to succeeded"),
    ("409", "PATCH", "/api/v1/payments/", "illegal move succeeded -> pending is refused"),
    ("409", "POST", "/api/v1/payments/", "duplicate payment_id is refused"),
    ("201", "POST", "/api/v1/payments/", "record a partial refund"),
    ("200", "PATCH", "/api/v1/payments/", "the gateway confirmed it"),
    ("200", "GET", "/api/v1/payments/", "read the payment after the refund"),
    ("200", "GET", "/api/v1/payments/", "list the payment's refunds"),
    ("409", "POST", "/api/v1/payments/", "refunding too much"),
    ("201", "POST", "/api/v1/payments/", "create a second payment (JPY, no decimals)"),
    ("200", "DELETE", "/api/v1/payments/", "cancel it"),
    ("200", "GET", "/api/v1/payments/booking/bk_", "list the booking's payments"),
]


@pytest.fixture(scope="module")
def server(server_url: str) -> Iterator[str]:
    with databases.migrated_database(server_url, "examples") as url:
        env = {"DATABASE_URL": url, "SECRET_KEY": TEST_SECRET, "ENVIRONMENT": "test"}
        with uvicorn_servers(1, env) as [live]:
            yield live.url


def run_example(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The example's own settings (for minting a token without TOKEN) must not come from this shell.
    ours = {"TOKEN", "SERVICE_TOKEN", "BASE_URL", "SECRET_KEY", "ENVIRONMENT"}
    clean = {name: value for name, value in os.environ.items() if name not in ours}
    return subprocess.run(  # noqa: S603 - our own example
        [sys.executable, str(EXAMPLE)],
        cwd=PROJECT_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def step_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("ok  ")]


def assert_every_step_ran(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    steps = step_lines(result.stdout)
    assert len(steps) == len(EXPECTED_STEPS), steps
    for line, (status, method, path, step) in zip(steps, EXPECTED_STEPS, strict=True):
        _, shown_status, shown_method, shown_path, *_ = line.split()
        assert (shown_status, shown_method) == (status, method), line
        assert shown_path.startswith(path), line
        assert line.endswith(f"  {step}"), line
    assert result.stdout.rstrip().endswith("all steps answered as expected")
    assert result.stderr == ""


def test_the_example_walks_through_the_api(server: str) -> None:
    settings = Settings(secret_key=TEST_SECRET, _env_file=None)
    token = create_access_token(123, settings)
    service_token = create_access_token(900, settings, roles=["service"])
    result = run_example({"BASE_URL": server, "TOKEN": token, "SERVICE_TOKEN": service_token})
    assert_every_step_ran(result)
    # It prints what it got: the new payment, belonging to the token's user, and the problems.
    assert '"user_id": 123' in result.stdout
    assert '"amount_total": "149.90"' in result.stdout
    assert '"status": 409' in result.stdout


def test_the_example_mints_its_own_token_from_the_settings(server: str) -> None:
    """Without TOKEN and SERVICE_TOKEN it signs them (user 123, backend 900) with this checkout's
    SECRET_KEY (the README's promise)."""
    assert_every_step_ran(run_example({"BASE_URL": server, "SECRET_KEY": TEST_SECRET, "ENVIRONMENT": "test"}))


def test_the_example_fails_at_the_first_unexpected_answer(server: str) -> None:
    wrong = create_access_token(
        123, Settings(secret_key="another-secret-that-the-server-does-not-know", _env_file=None)
    )
    result = run_example({"BASE_URL": server, "TOKEN": wrong, "SERVICE_TOKEN": wrong})
    assert result.returncode == 1
    assert [line.endswith("service is up") for line in step_lines(result.stdout)] == [True]
    assert result.stderr.startswith("FAILED create a payment: expected 201, got 401")


def test_the_example_fails_when_there_is_no_server() -> None:
    result = run_example({"BASE_URL": f"http://127.0.0.1:{free_port()}", "TOKEN": "unused", "SERVICE_TOKEN": "unused"})
    assert result.returncode == 1
    assert "FAILED cannot talk to" in result.stderr
