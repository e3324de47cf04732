"""The API as the teams that consume it see it: a client generated from the live /openapi.json with
openapi-python-client, with plain method names, creating, reading, listing, moving and canceling
payments against a real server."""

import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from app.core.security import create_access_token
from app.main import create_app
from tests import databases
from tests.conftest import TEST_SECRET
from tests.live import uvicorn_servers

pytestmark = pytest.mark.slow

PACKAGE = "payments_client"
OPERATIONS = ("create_payment", "get_payment", "list_payments", "change_payment_status", "cancel_payment")


def test_every_operation_has_a_plain_unique_operation_id() -> None:
    schema = create_app(Settings(secret_key=TEST_SECRET, _env_file=None)).openapi()
    ids = [operation["operationId"] for path in schema["paths"].values() for operation in path.values()]
    assert len(ids) == len(set(ids)), ids
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", operation_id) for operation_id in ids), ids
    assert set(OPERATIONS) <= set(ids)


@pytest.fixture(scope="module")
def client_database_url(server_url: str) -> Iterator[str]:
    with databases.migrated_database(server_url, "client") as url:
        yield url


def generate_client(spec: dict[str, Any], directory: Path) -> None:
    (directory / "openapi.json").write_text(json.dumps(spec))
    # No post hooks: the generator would run ruff from PATH to format the code it writes.
    (directory / "config.json").write_text(json.dumps({"package_name_override": PACKAGE, "post_hooks": []}))
    generator = Path(sys.executable).parent / "openapi-python-client"
    command = [str(generator), "generate", "--path", "openapi.json", "--config", "config.json", "--meta", "none"]
    result = subprocess.run(  # noqa: S603 - our own command line
        [*command, "--output-path", PACKAGE], cwd=directory, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def load(directory: Path, module: str) -> ModuleType:
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(f"{PACKAGE}.{module}")
    finally:
        sys.path.remove(str(directory))


def test_a_generated_client_creates_reads_lists_moves_and_cancels(client_database_url: str, tmp_path: Path) -> None:
    settings = Settings(secret_key=TEST_SECRET, _env_file=None)
    user_token = create_access_token(31, settings)
    service_token = create_access_token(900, settings, roles=[settings.service_role])
    env = {"DATABASE_URL": client_database_url, "SECRET_KEY": TEST_SECRET}
    with uvicorn_servers(1, env) as [server]:
        generate_client(httpx.get(f"{server.url}/openapi.json").json(), tmp_path)
        client_module = load(tmp_path, "client")
        models = load(tmp_path, "models")
        api = {name: load(tmp_path, f"api.payments.{name}") for name in OPERATIONS}
        user = client_module.AuthenticatedClient(base_url=server.url, token=user_token)
        backend = client_module.AuthenticatedClient(base_url=server.url, token=service_token)

        def create(payment_id: str) -> Any:
            body = models.PaymentCreate(
                provider=models.PaymentProvider.STRIPE,
                currency="EUR",
                amount_total="120.50",
                payment_id=payment_id,
                booking_id="bk_client",
            )
            response = api["create_payment"].sync_detailed(client=user, body=body, idempotency_key=f"key-{payment_id}")
            assert response.status_code == 201, response.content
            return response.parsed

        paid, dropped = create("pi_client_paid"), create("pi_client_dropped")
        assert isinstance(paid, models.PaymentRecord)
        assert (paid.user_id, paid.amount_total, paid.currency) == (31, "120.50", "EUR")
        assert paid.payment_status == models.PaymentStatus.PENDING

        read = api["get_payment"].sync(paid.id, client=user)
        assert isinstance(read, models.PaymentRecord)
        assert (read.id, read.payment_id, read.version) == (paid.id, "pi_client_paid", 1)

        page = api["list_payments"].sync(client=user, size=10)
        assert isinstance(page, models.PaymentPage)
        assert [item.id for item in page.items] == [dropped.id, paid.id]  # newest first

        moved = api["change_payment_status"].sync(
            paid.id, client=backend, body=models.PaymentStatusUpdate(payment_status=models.PaymentStatus.SUCCEEDED)
        )
        assert isinstance(moved, models.PaymentRecord)
        assert (moved.payment_status, moved.version) == (models.PaymentStatus.SUCCEEDED, 2)

        refused = api["change_payment_status"].sync_detailed(
            dropped.id, client=user, body=models.PaymentStatusUpdate(payment_status=models.PaymentStatus.SUCCEEDED)
        )
        assert refused.status_code == 403
        assert isinstance(refused.parsed, models.Problem)

        canceled = api["cancel_payment"].sync(dropped.id, client=user)
        assert isinstance(canceled, models.PaymentRecord)
        assert canceled.payment_status == models.PaymentStatus.CANCELED
        assert api["get_payment"].sync(dropped.id, client=user).payment_status == models.PaymentStatus.CANCELED
