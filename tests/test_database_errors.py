"""Which driver errors mean "the database cannot serve this now" (503, retry) and which are bugs
(500), and what the compiled-once statements refuse."""

import asyncio
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import bindparam, column, literal, select, table, update
from sqlalchemy.dialects.postgresql import JSONB

from app.api.problems import install_problem_handlers
from app.core.config import Settings
from app.core.database import Database, DatabaseBusy, Statement, UnitOfWork, create_pool, is_database_unavailable
from tests import TEST_SECRET


def postgres_error(sqlstate: str) -> Exception:
    error: Exception = asyncpg.PostgresError.new({"C": sqlstate, "M": "from the server"})
    return error


DRIVER_ERRORS = [
    (postgres_error("57014"), True),  # statement timeout
    (postgres_error("57P01"), True),  # admin shutdown
    (postgres_error("08006"), True),  # connection failure
    (postgres_error("53300"), True),  # too many connections
    (asyncpg.InterfaceError("cannot perform operation: connection is closed"), True),
    (ConnectionResetError(), True),
    (postgres_error("22021"), False),  # bad input that should have been refused earlier: a bug
    (postgres_error("23505"), False),  # unique violation
    # A connection whose protocol a failure left mid-operation (never reused, but the request
    # that meets it gets a 503 and retries).
    (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), True),
    (
        asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
        True,
    ),
    (asyncpg.exceptions.InternalClientError("could not resolve query result and/or argument types"), False),
    (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"), True),
    (DatabaseBusy("no database connection became free in time"), True),
    (postgres_error("55P03"), True),  # lock timeout
    (postgres_error("53200"), True),  # out of memory
    (asyncpg.exceptions.DataError("invalid input for query argument $1"), False),
]


@pytest.mark.parametrize(("error", "unavailable"), DRIVER_ERRORS)
def test_driver_errors_are_unavailable_only_when_the_database_is(error: Exception, unavailable: bool) -> None:
    assert is_database_unavailable(error) is unavailable


@pytest.mark.parametrize(("error", "unavailable"), DRIVER_ERRORS)
async def test_each_driver_error_reaches_the_error_map_through_the_app(error: Exception, unavailable: bool) -> None:
    """Whatever the driver raises in a route is answered by the one error map: 503 problem+json with
    Retry-After when the database is unavailable, else a 500 without details (never a bare crash)."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/fails")
    async def fails() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/fails")
    assert response.status_code == (503 if unavailable else 500), (type(error), response.text)
    assert response.headers["content-type"] == "application/problem+json"
    assert ("retry-after" in response.headers) is unavailable
    assert "from the server" not in response.text and "asyncpg" not in response.text


def test_a_statement_compiled_once_binds_by_name_and_keeps_its_literals() -> None:
    items = table("items", column("id"), column("state"))
    query = Statement.of(select(items.c.id).where(items.c.id == bindparam("wanted"), items.c.state == "open"))
    assert query.sql.count("$") == 2
    assert query.arguments({"wanted": 7}) == [7, "open"]


def test_json_parameters_are_bound_as_their_json_text() -> None:
    items = table("items", column("id"), column("data", JSONB))
    query = Statement.of(update(items).where(items.c.id == bindparam("wanted")).values(data=bindparam("data")))
    assert query.json_names == {"data"}
    assert sorted(query.arguments({"wanted": 7, "data": {"a": "b"}}), key=str) == [7, '{"a":"b"}']
    assert None in query.arguments({"wanted": 7, "data": None})  # SQL NULL, not the JSON text "null"


def test_a_statement_with_expanding_parameters_is_refused() -> None:
    items = table("items", column("id"))
    with pytest.raises(ValueError, match="expanding"):
        Statement.of(select(items.c.id).where(items.c.id.in_(bindparam("ids", expanding=True))))


async def test_behind_pgbouncer_there_is_no_statement_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes statements safe behind PgBouncer in transaction mode (tests/test_pgbouncer.py)."""
    options: dict[str, Any] = {}

    async def capture(dsn: str, **kwargs: Any) -> None:
        options.update(kwargs)

    monkeypatch.setattr(asyncpg, "create_pool", capture)
    url = "postgresql+asyncpg://u@h/db"
    await create_pool(Settings(secret_key=TEST_SECRET, database_url=url, db_pgbouncer=True, _env_file=None))
    assert options["statement_cache_size"] == 0 and "server_settings" not in options
    options.clear()
    await create_pool(Settings(secret_key=TEST_SECRET, database_url=url, _env_file=None))
    assert "statement_cache_size" not in options and "statement_timeout" in options["server_settings"]


class ExhaustedPool:
    """A pool whose every connection is taken: acquire() waits for ever."""

    always_in_transaction = False

    async def acquire(self) -> Any:
        await asyncio.Event().wait()

    async def release(self, connection: Any, *, failed: bool, transaction: Any) -> None:
        raise AssertionError("nothing was acquired")


@pytest.mark.parametrize("gated", [True, False], ids=["a request", "a claim outside the gate"])
async def test_waiting_for_an_exhausted_pool_ends_at_the_deadline(gated: bool) -> None:
    settings = Settings(secret_key=TEST_SECRET, db_pool_size=1, _env_file=None)
    database = Database(ExhaustedPool(), settings)
    deadline = asyncio.get_running_loop().time() + 0.2
    if gated:  # the only slot is taken, so this request waits at the gate, then for the pool
        await database.gate.enter(deadline + 10)
    unit = UnitOfWork(database, gated=gated, deadline=deadline)
    with pytest.raises(DatabaseBusy):
        await asyncio.wait_for(unit.fetchval(Statement.of(select(literal(1)))), timeout=2)
