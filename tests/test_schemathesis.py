"""Property-based fuzzing of the whole API from its own OpenAPI schema (schemathesis), against a
real server on its own database: no 5xx anywhere, and every response (status, headers, body) is
the one the schema documents. Bounded (examples per operation) and seeded, so it is repeatable."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.config import Settings
from app.core.security import create_access_token
from tests import databases
from tests.conftest import STRIPE_SECRET, TEST_SECRET
from tests.live import uvicorn_servers

pytestmark = pytest.mark.slow

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "50")


@pytest.fixture(scope="module")
def fuzz_database_url(server_url: str) -> Iterator[str]:
    with databases.migrated_database(server_url, "fuzz") as url:
        yield url


@pytest.mark.parametrize("admin", [True, False], ids=["admin", "user"])
def test_the_api_survives_schemathesis(fuzz_database_url: str, tmp_path: Path, admin: bool) -> None:
    env = {
        "DATABASE_URL": fuzz_database_url,
        "SECRET_KEY": TEST_SECRET,
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        # The write limit would answer most generated writes with 429, leaving the logic behind them
        # untested; the 429 itself is documented and tested in test_write_limit.
        "USER_WRITE_LIMIT_PER_MINUTE": "0",
    }
    settings = Settings(secret_key=TEST_SECRET, _env_file=None)
    token = create_access_token(1, settings, roles=["admin"] if admin else [])
    with uvicorn_servers(1, env) as [server]:
        command = [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "20261127",
            "--generation-deterministic",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
        ]
        result = subprocess.run(  # noqa: S603 - our own command line
            command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
        )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
