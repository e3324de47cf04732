import os
from collections.abc import AsyncIterator, Callable, Iterator
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
    create_async_engine,
)

from app.core.config import Settings
from app.core.database import Connection, Database, set_up_connection
from app.core.security import create_access_token
from app.main import attach_database, create_app
from app.models import Payment, PaymentProvider, PaymentStatus
from tests import TEST_SECRET as TEST_SECRET  # re-exported: the test modules import it from here
from tests import databases

# Two webhook secrets, as during a rotation: events signed with either are accepted.
STRIPE_SECRET = "whsec_test_current"
STRIPE_OLD_SECRET = "whsec_test_previous"


@pytest.fixture(scope="session")
def server_url() -> str:
    return databases.server_url()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """One database for the whole run, migrated once with Alembic."""
    name = f"payment_service_test_{os.getpid()}"
    url = databases.create_database(server_url, name)
    databases.migrate(url)
    yield url
    databases.drop_database(server_url, name)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        secret_key=SecretStr(TEST_SECRET),
        stripe_webhook_secret=SecretStr(f"{STRIPE_SECRET},{STRIPE_OLD_SECRET}"),
        # One app serves the whole run, mostly as user 1: the write limit has its own tests.
        user_write_limit_per_minute=0,
        _env_file=None,
    )


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """SQLAlchemy's engine, for the tests' own arranging and checking (the ORM models)."""
    assert settings.database_url is not None
    engine = create_async_engine(settings.database_url)
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
    """The asyncpg connection under `connection`, set up as the app's pool sets up its own."""
    # SQLAlchemy sends the outer transaction's BEGIN with its first statement: send it now, so the
    # app's units of work run in savepoints of it and are rolled back with the test.
    await connection.exec_driver_sql("SELECT 1")
    raw = (await connection.get_raw_connection()).driver_connection
    await set_up_connection(raw)
    return raw


class TestConnectionSource:
    """The test's one connection, inside the transaction the test rolls back: every unit of work
    runs in a savepoint of it, so the app sees the test's data and the test sees the app's."""

    always_in_transaction = True

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def acquire(self) -> Connection:
        return self.connection

    async def release(self, connection: Connection, *, failed: bool, transaction: Any) -> None:
        if transaction is not None:  # a failed unit's savepoint: the test's transaction goes on
            await transaction.rollback()


@pytest.fixture
def test_database(driver_connection: Any, settings: Settings) -> Database:
    """The app's Database on the test's connection (for calling repositories and services)."""
    return Database(TestConnectionSource(driver_connection), settings)


def attach_test_connection(app: FastAPI, driver_connection: Any, settings: Settings) -> None:
    attach_database(app, Database(TestConnectionSource(driver_connection), settings))


@pytest.fixture
async def client(app: FastAPI, driver_connection: Any, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    attach_test_connection(app, driver_connection, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


TokenFactory = Callable[..., dict[str, str]]


@pytest.fixture
def auth(settings: Settings) -> TokenFactory:
    """auth(user_id, admin=False, service=False) -> headers with a valid bearer token: an end user's,
    an admin's or a trusted backend's."""

    def make(user_id: int, *, admin: bool = False, service: bool = False) -> dict[str, str]:
        roles = [settings.admin_role] if admin else [settings.service_role] if service else []
        token = create_access_token(user_id, settings, roles=roles)
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
    if status is PaymentStatus.REFUNDED:  # the payments' CHECK constraint: refunded means refunded in full
        values.setdefault("amount_refunded", Decimal(amount))
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
