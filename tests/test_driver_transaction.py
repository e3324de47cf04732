"""The create route's transaction on the driver: when it takes a connection and passes the gate,
what it sends, and how it hands the connection back."""

import asyncio
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy.pool import QueuePool

from app.core.config import Settings
from app.core.database import DriverTransaction, create_engine, driver_connections
from app.core.errors import DatabaseUnavailable, DuplicatePayment
from app.dependencies.database import get_driver_transaction


class FakeTransaction:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def start(self) -> None:
        self.log.append("BEGIN")

    async def commit(self) -> None:
        self.log.append("COMMIT")

    async def rollback(self) -> None:
        self.log.append("ROLLBACK")


class FakeConnection:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def transaction(self) -> FakeTransaction:
        return FakeTransaction(self.log)


class RecordingCheckout:
    """A driver connection factory that records how each connection was handed back."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.returned_with: list[BaseException | None] = []

    def __call__(self) -> "RecordingCheckout":
        return self

    async def __aenter__(self) -> FakeConnection:
        self.log.append("checkout")
        return FakeConnection(self.log)

    async def __aexit__(self, kind: object, error: BaseException | None, traceback: object) -> bool:
        self.returned_with.append(error)
        return False


def driver_transaction(
    checkout: RecordingCheckout, gate: asyncio.Semaphore | None = None
) -> AsyncGenerator[DriverTransaction, None]:
    """get_driver_transaction as FastAPI drives it, for a request whose connections come from `checkout`."""
    state = SimpleNamespace(transaction_driver_connection=checkout, db_gate=gate or asyncio.Semaphore(1))
    request: Any = SimpleNamespace(app=SimpleNamespace(state=state))
    return cast(AsyncGenerator[DriverTransaction, None], get_driver_transaction(request))


async def test_the_driver_transaction_takes_no_connection_until_a_statement_needs_one() -> None:
    checkout = RecordingCheckout()
    dependency = driver_transaction(checkout)
    await anext(dependency)
    with pytest.raises(StopAsyncIteration):
        await anext(dependency)
    assert checkout.log == []
    assert checkout.returned_with == []


async def test_the_driver_transaction_commits_once_and_hands_the_connection_back() -> None:
    checkout = RecordingCheckout()
    dependency = driver_transaction(checkout)
    transaction = await anext(dependency)
    await transaction.connection()
    await transaction.connection()  # the same transaction
    with pytest.raises(StopAsyncIteration):
        await anext(dependency)
    assert checkout.log == ["checkout", "BEGIN", "COMMIT"]
    assert checkout.returned_with == [None]


async def test_a_refusal_rolls_back_but_keeps_the_connection() -> None:
    checkout = RecordingCheckout()
    dependency = driver_transaction(checkout)
    transaction = await anext(dependency)
    await transaction.connection()
    with pytest.raises(DuplicatePayment):
        await dependency.athrow(DuplicatePayment("taken"))
    assert checkout.log == ["checkout", "BEGIN", "ROLLBACK"]
    assert checkout.returned_with == [None]  # not invalidated: a 409 must not cost a reconnect


async def test_a_failure_rolls_back_and_hands_the_connection_back_as_suspect() -> None:
    checkout = RecordingCheckout()
    dependency = driver_transaction(checkout)
    transaction = await anext(dependency)
    await transaction.connection()
    failure = ConnectionResetError("gone")
    with pytest.raises(ConnectionResetError):
        await dependency.athrow(failure)
    assert checkout.log == ["checkout", "BEGIN", "ROLLBACK"]
    assert checkout.returned_with == [failure]  # the pool replaces it


async def test_the_gate_is_passed_before_the_endpoint_runs_and_released_after() -> None:
    gate = asyncio.Semaphore(1)
    dependency = driver_transaction(RecordingCheckout(), gate)
    await anext(dependency)
    assert gate.locked()  # held from here on, so an Idempotency-Key is claimed only once admitted
    with pytest.raises(StopAsyncIteration):
        await anext(dependency)
    assert not gate.locked()


async def test_a_server_side_error_hands_the_connection_back_as_suspect() -> None:
    checkout = RecordingCheckout()
    dependency = driver_transaction(checkout)
    transaction = await anext(dependency)
    await transaction.connection()
    failure = DatabaseUnavailable("down")  # a 503, not a refusal
    with pytest.raises(DatabaseUnavailable):
        await dependency.athrow(failure)
    assert checkout.returned_with == [failure]


async def test_on_the_real_pool_one_transaction_is_committed_and_a_failed_connection_replaced(
    settings: Settings,
) -> None:
    engine = create_engine(settings)
    pool = cast(QueuePool, engine.sync_engine.pool)
    connect = driver_connections(engine, settings, gate=None, autocommit=False)
    try:
        transaction = DriverTransaction(connect)
        connection = await transaction.connection()
        assert connection.is_in_transaction()
        first = await connection.fetchval("SELECT txid_current()")
        assert await (await transaction.connection()).fetchval("SELECT txid_current()") == first
        await transaction.commit()
        assert not connection.is_in_transaction()
        await transaction.close()
        assert pool.checkedout() == 0

        failing = DriverTransaction(connect)
        broken = await failing.connection()
        await failing.close(ConnectionResetError("gone"))
        assert not broken.is_in_transaction()  # rolled back first
        assert broken.is_closed()  # then invalidated: the pool opens a fresh one next time
        assert pool.checkedout() == 0
    finally:
        await engine.dispose()
