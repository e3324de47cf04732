"""Which driver errors mean "the database cannot serve this now" (503, retry) and which are bugs
(500), what the compiled-once statements refuse, and how the driver transaction hands its
connection back."""

from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import bindparam, column, select, table

from app.core.database import DriverTransaction, is_database_unavailable
from app.core.errors import DuplicatePayment
from app.dependencies.database import get_driver_transaction
from app.repositories.driver import DriverQuery


def postgres_error(sqlstate: str) -> Exception:
    error: Exception = asyncpg.PostgresError.new({"C": sqlstate, "M": "from the server"})
    return error


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (postgres_error("57014"), True),  # statement timeout
        (postgres_error("57P01"), True),  # admin shutdown
        (postgres_error("08006"), True),  # connection failure
        (postgres_error("53300"), True),  # too many connections
        (asyncpg.InterfaceError("cannot perform operation: connection is closed"), True),
        (ConnectionResetError(), True),
        (postgres_error("22021"), False),  # bad input that should have been refused earlier: a bug
        (postgres_error("23505"), False),  # unique violation
        (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), False),
        (asyncpg.exceptions.DataError("invalid input for query argument $1"), False),
    ],
)
def test_driver_errors_are_unavailable_only_when_the_database_is(error: Exception, unavailable: bool) -> None:
    assert is_database_unavailable(error) is unavailable


def test_a_statement_compiled_once_binds_by_name_and_keeps_its_literals() -> None:
    items = table("items", column("id"), column("state"))
    query = DriverQuery.of(select(items.c.id).where(items.c.id == bindparam("wanted"), items.c.state == "open"))
    assert query.sql.count("$") == 2
    assert query.arguments({"wanted": 7}) == [7, "open"]


def test_a_statement_with_expanding_parameters_is_refused() -> None:
    items = table("items", column("id"))
    with pytest.raises(ValueError, match="expanding"):
        DriverQuery.of(select(items.c.id).where(items.c.id.in_(bindparam("ids", expanding=True))))


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


def driver_transaction(checkout: RecordingCheckout) -> AsyncGenerator[DriverTransaction, None]:
    """get_driver_transaction as FastAPI drives it, for a request whose connections come from `checkout`."""
    request: Any = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(transaction_driver_connection=checkout)))
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
