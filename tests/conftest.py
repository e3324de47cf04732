import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from app.core.config import Settings
from app.core.database import create_engine, request_gate
from app.core.security import ADMIN_ROLE, create_access_token
from app.main import create_app
from app.models import Payment, PaymentProvider, PaymentStatus
from app.repositories.payment_reads import PaymentReads
from app.services.payments import PaymentReader
from tests import databases
from tests.pgbouncer import pgbouncer_in_front_of

TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256"
# Two webhook secrets, as during a rotation: events signed with either are accepted.
STRIPE_SECRET = "whsec_test_current"
STRIPE_OLD_SECRET = "whsec_test_previous"


@pytest.fixture(scope="session")
def server_url() -> str:
    return databases.server_url()


# Set by tests/test_pgbouncer.py to run the API tests again through PgBouncer (transaction mode).
VIA_PGBOUNCER = os.environ.get("TEST_VIA_PGBOUNCER") == "1"


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """One database for the whole run, migrated once with Alembic (directly, never through PgBouncer)."""
    name = f"payment_service_test_{os.getpid()}"
    url = databases.create_database(server_url, name)
    databases.migrate(url)
    if VIA_PGBOUNCER:
        with pgbouncer_in_front_of(url) as through_pgbouncer:
            yield through_pgbouncer
    else:
        yield url
    databases.drop_database(server_url, name)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        db_pgbouncer=VIA_PGBOUNCER,
        secret_key=SecretStr(TEST_SECRET),
        stripe_webhook_secret=SecretStr(f"{STRIPE_SECRET},{STRIPE_OLD_SECRET}"),
        _env_file=None,
    )


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Built like the app's engine, so the tests use the same connection settings (PgBouncer mode too)."""
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Each test runs inside one outer transaction that is rolled back at the end; the app's own
    commits and rollbacks become savepoints inside it (join_transaction_mode="create_savepoint")."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            await transaction.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        bind=connection, expire_on_commit=False, autoflush=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
async def db(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for arranging data and checking what the app stored."""
    async with sessionmaker() as session:
        yield session


@pytest.fixture(scope="session")
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def driver_connection(connection: AsyncConnection) -> Any:
    """The asyncpg connection under `connection` (for the statements the app runs on the driver)."""
    # SQLAlchemy sends the outer transaction's BEGIN with its first statement: send it now, or the
    # driver's statements before it would run in autocommit and outlive the test.
    await connection.exec_driver_sql("SELECT 1")
    return (await connection.get_raw_connection()).driver_connection


def attach_test_connection(
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    connection: AsyncConnection,
    driver_connection: Any,
    settings: Settings,
) -> None:
    """Every session and connection the app takes is the test's one connection (in its outer
    transaction), so the app sees the test's data and everything is rolled back afterwards."""
    app.state.sessionmaker = sessionmaker
    app.state.read_sessionmaker = sessionmaker
    app.state.payment_reader = PaymentReader(PaymentReads(lambda: nullcontext(driver_connection)))
    app.state.side_driver_connection = lambda: nullcontext(driver_connection)
    app.state.transaction_driver_connection = lambda: nullcontext(driver_connection)
    app.state.db_gate = request_gate(settings)


@pytest.fixture
async def client(
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    connection: AsyncConnection,
    driver_connection: Any,
    settings: Settings,
) -> AsyncIterator[httpx.AsyncClient]:
    attach_test_connection(app, sessionmaker, connection, driver_connection, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


TokenFactory = Callable[..., dict[str, str]]


@pytest.fixture
def auth(settings: Settings) -> TokenFactory:
    """auth(user_id, admin=False) -> headers with a valid bearer token."""

    def make(user_id: int, *, admin: bool = False) -> dict[str, str]:
        token = create_access_token(user_id, settings, roles=[ADMIN_ROLE] if admin else [])
        return {"Authorization": f"Bearer {token}"}

    return make


_sequence = iter(range(1, 10**9))


async def make_payment(
    db: AsyncSession,
    *,
    user_id: int = 1,
    status: PaymentStatus = PaymentStatus.PENDING,
    amount: str = "100.00",
    currency: str = "USD",
    provider: PaymentProvider = PaymentProvider.STRIPE,
    created_at: datetime | None = None,
    **fields: Any,
) -> Payment:
    """Insert one payment directly (not through the API) and return it. Without `created_at` it gets
    a distinct time in the past, later for each call, so any update visibly moves updated_at."""
    number = next(_sequence)
    if created_at is None:
        created_at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=number)
    values: dict[str, Any] = {"payment_id": f"pi_test_{number}", **fields}
    payment = Payment(
        user_id=user_id,
        payment_status=status,
        amount_total=Decimal(amount),
        currency=currency,
        provider=provider,
        **values,
    )
    payment.created_at = created_at
    payment.updated_at = created_at
    db.add(payment)
    await db.flush()
    return payment


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
