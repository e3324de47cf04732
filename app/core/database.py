"""The one way to PostgreSQL. Every statement of the service takes this path:

    request ──▶ UnitOfWork (one per request, from app/dependencies/database.py)
                  │ per statement or transaction() block: passes the FairGate
                  │ (≤ DB_POOL_TIMEOUT_SECONDS), takes a pooled asyncpg connection, gives it back
                  ▼
                Statement (SQLAlchemy Core, compiled once) ──▶ asyncpg ──▶ PostgreSQL
    any failure ──▶ the connection is closed, never reused ──▶ is_database_unavailable(): 503 or 500

SQLAlchemy is the schema (app/models, for Alembic) and the query builder; statements run on asyncpg
directly, whose pool owns the connections. One UnitOfWork serves one request: a statement outside a
transaction commits on its own (autocommit: one round trip, atomic by itself, which is how the hot
routes write a payment, its history and its stored response in one statement); several statements
that must commit together run in a `transaction()` block, which commits when the block ends (the one
place that commits), before the response is rendered. Every wait (the gate, connecting, each
statement, COMMIT) is bounded by one deadline per request, DB_REQUEST_TIMEOUT_SECONDS from its first
use of the database, so a hung PostgreSQL is answered with 503 instead of a hang.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, Self, cast

import asyncpg  # type: ignore[import-untyped]
import orjson
from sqlalchemy import JSON, ClauseElement
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.sql.compiler import SQLCompiler

from app.core.config import Settings

# asyncpg ships no type hints: its Connection and Record, as this module hands them out.
Connection = Any
Row = Mapping[str, Any]


class DatabaseNotConfigured(RuntimeError):
    pass


class DatabaseBusy(TimeoutError):
    """No connection could be had within the pool timeout (or the request's deadline)."""


# ---------------------------------------------------------------------------------------------
# The error map: the one place that decides "the database cannot serve this now" (503) vs a bug.

# SQLSTATEs meaning "cannot serve this now": statement timeout, lock timeout, admin shutdown, crash
# shutdown, cannot connect now; and the classes connection exception (08) and insufficient
# resources (53: too many connections, out of memory, disk full).
_UNAVAILABLE_SQLSTATES = frozenset({"57014", "55P03", "57P01", "57P02", "57P03"})
_UNAVAILABLE_CLASSES = ("08", "53")
# asyncpg's own words for a connection that is gone or whose protocol a failure left mid-operation.
_BROKEN_CONNECTION = ("connection is closed", "another operation is in progress", "cannot switch to state")


def is_database_unavailable(error: BaseException) -> bool:
    """True when PostgreSQL is unreachable, restarting, hung or overloaded (a 503 with Retry-After:
    worth retrying); False for errors that are bugs (a 500 with its traceback in the log)."""
    if isinstance(error, OSError | TimeoutError):  # refused, reset, connect/statement/pool timeouts
        return True
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = error.sqlstate or ""
        return sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate.startswith(_UNAVAILABLE_CLASSES)
    # ConnectionDoesNotExistError is a PostgresError of class 08, so it was answered above.
    if isinstance(error, asyncpg.InterfaceError | asyncpg.InternalClientError):  # a broken connection, or a bug
        return any(words in str(error) for words in _BROKEN_CONNECTION)
    return False


# ---------------------------------------------------------------------------------------------
# Statements

_ASYNCPG_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class Statement:
    """A SQLAlchemy Core statement compiled once to asyncpg's SQL ($1, $2, ...), run with values by
    name. asyncpg prepares it once per connection and caches it; SQLAlchemy's execution layer
    (cache key, parameter and row processing, a greenlet hop) would cost as much CPU as asyncpg
    itself on every call. Values are bound as they are (asyncpg encodes ints, strings, str enums,
    decimals, timestamps, intervals, bytes and lists), except JSON ones, sent as their JSON text."""

    sql: str
    parameter_names: tuple[str, ...]
    fixed_values: Mapping[str, Any]  # parameters whose value is part of the statement
    json_names: frozenset[str]  # parameters of a JSON type

    @classmethod
    def of(cls, statement: ClauseElement) -> Self:
        compiled = cast(SQLCompiler, statement.compile(dialect=_ASYNCPG_DIALECT))
        if "__[POSTCOMPILE_" in str(compiled):  # expanding IN (...) and the like are rendered per call
            raise ValueError("a statement with expanding parameters cannot be compiled once")
        names = tuple(compiled.positiontup or ())
        fixed = {name: bind.value for name, bind in compiled.binds.items() if name in names and not bind.required}
        json_names = frozenset(name for name in names if isinstance(compiled.binds[name].type, JSON))
        return cls(str(compiled), names, fixed, json_names)

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        fixed = self.fixed_values
        arguments = [values[name] if name in values else fixed[name] for name in self.parameter_names]
        if self.json_names:
            for position, name in enumerate(self.parameter_names):
                if name in self.json_names and arguments[position] is not None:
                    arguments[position] = orjson.dumps(arguments[position]).decode()
        return arguments


def one(row: Row | None) -> Row:
    """The row of a statement that always returns one (e.g. an UPDATE of a row this transaction
    has locked)."""
    if row is None:
        raise LookupError("the statement returned no row")
    return row


# ---------------------------------------------------------------------------------------------
# Connections


class ConnectionSource(Protocol):
    """Where units of work take their connections: the app's pool, or in the in-process tests one
    connection inside a transaction they roll back (and there every unit runs in a savepoint)."""

    always_in_transaction: bool

    async def acquire(self) -> Connection: ...

    async def release(self, connection: Connection, *, failed: bool, transaction: Any) -> None:
        """Take the connection back. After a failure it is closed, never reused; `transaction` is
        the unit's transaction if one is still open."""
        ...


class PoolSource:
    always_in_transaction = False

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def acquire(self) -> Connection:
        return await self.pool.acquire()

    async def release(self, connection: Connection, *, failed: bool, transaction: Any) -> None:
        if failed:
            # Even an error the server reports can leave the protocol waiting for a reply that never
            # comes (a shutdown arriving mid-statement), and a timed-out statement may still run on
            # the server: the next request gets a fresh connection instead. A connection the server
            # closed went back to the pool by itself already, and its proxy refuses terminate().
            with contextlib.suppress(asyncpg.InterfaceError):
                connection.terminate()
        await self.pool.release(connection)  # a no-op for a connection already back in the pool


async def _keep_session(connection: Connection) -> None:
    """The pool's reset on release. asyncpg's default (RESET ALL, UNLISTEN, unlock advisory locks)
    costs a round trip per request for state this service never sets; an open transaction is still
    rolled back by asyncpg itself."""


async def set_up_connection(connection: Connection) -> None:
    """Run on every new connection: jsonb values arrive as Python objects (and are sent as their
    JSON text, see Statement)."""
    await connection.set_type_codec("jsonb", schema="pg_catalog", encoder=str, decoder=orjson.loads)


def asyncpg_dsn(database_url: str) -> str:
    """The DSN asyncpg takes: SQLAlchemy's `postgresql+asyncpg://` scheme becomes `postgresql://`."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_pool(settings: Settings) -> Any:
    """asyncpg's pool, with no connection opened yet (the service starts while PostgreSQL is away)."""
    if settings.database_url is None:
        raise DatabaseNotConfigured(
            "DATABASE_URL is not set. Set it to postgresql+asyncpg://user:password@host:5432/db, "
            "or start the service with `make run`, which starts an embedded PostgreSQL."
        )
    options: dict[str, Any] = {}
    if settings.db_pgbouncer:
        # PgBouncer in transaction mode hands each transaction to any server connection, so a
        # statement prepared on one is unknown on the next: no statement cache (asyncpg then sends
        # each statement's Parse with its Execute, in one exchange). PgBouncer also refuses unknown
        # startup parameters, so statement_timeout must be set on the database role instead (see
        # docs/operations.md).
        options["statement_cache_size"] = 0
    else:
        options["server_settings"] = {"statement_timeout": str(int(settings.db_statement_timeout_seconds * 1000))}
    return await asyncpg.create_pool(
        asyncpg_dsn(settings.database_url),
        min_size=0,
        max_size=settings.db_pool_size + settings.db_max_overflow,
        timeout=settings.db_connect_timeout_seconds,
        command_timeout=settings.db_request_timeout_seconds,
        max_inactive_connection_lifetime=300,
        init=set_up_connection,
        reset=_keep_session,
        **options,
    )


class FairGate:
    """Admits units of work to DB_POOL_SIZE connections in arrival order, each waiting at most
    DB_POOL_TIMEOUT_SECONDS (then DatabaseBusy: a 503).

    Without it, under more concurrent requests than connections, a connection handed back goes to
    whichever request asks next, so some waiters are overtaken again and again (p99 in seconds).
    The pool's remaining DB_MAX_OVERFLOW connections serve the statements that run outside the
    gate (Idempotency-Key claims, readiness, housekeeping), so those never wait behind a request."""

    def __init__(self, size: int, timeout: float) -> None:
        self._slots = asyncio.Semaphore(size)
        self.timeout = timeout
        self.waiting = 0

    async def enter(self, deadline: float) -> bool:
        """Pass, waiting in line until the deadline at the latest; True when it had to wait."""
        if not self._slots.locked():
            await self._slots.acquire()  # free: no wait, no timer
            return False
        loop = asyncio.get_running_loop()
        self.waiting += 1
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + self.timeout)):
                await self._slots.acquire()
        except TimeoutError as timeout:
            raise DatabaseBusy("no database connection became free in time") from timeout
        finally:
            self.waiting -= 1
        return True

    def leave(self) -> None:
        self._slots.release()


# ---------------------------------------------------------------------------------------------
# The unit of work


class UnitOfWork:
    """One request's database work. It holds a connection only while it needs one: for a single
    statement, which commits on its own (autocommit: one round trip, atomic by itself), or for a
    transaction() block, which commits when the block ends and rolls back when it raises. So
    nothing is left to clean up when the request ends, and no connection is held while a request
    reads its body or renders its response. Every wait is bounded by the request's deadline, and a
    connection that saw any failure is closed, never reused."""

    __slots__ = ("_connection", "_deadline", "_failed", "database", "gated", "request_id")

    def __init__(
        self,
        database: "Database",
        *,
        request_id: str | None = None,
        gated: bool = True,
        deadline: float | None = None,
    ) -> None:
        self.database = database
        self.request_id = request_id  # recorded with the changes it makes (history, events)
        self.gated = gated
        self._deadline = deadline
        self._connection: Connection | None = None  # while a transaction() block runs
        self._failed = False

    # -- statements ------------------------------------------------------------------------

    async def fetch(self, statement: Statement, **values: Any) -> list[Row]:
        rows: list[Row] = await self._run("fetch", statement, values)
        return rows

    async def fetchrow(self, statement: Statement, **values: Any) -> Row | None:
        row: Row | None = await self._run("fetchrow", statement, values)
        return row

    async def fetchval(self, statement: Statement, **values: Any) -> Any:
        return await self._run("fetchval", statement, values)

    async def execute(self, statement: Statement, **values: Any) -> str:
        """The statement's status, e.g. "UPDATE 1"."""
        status: str = await self._run("execute", statement, values)
        return status

    # -- transactions ----------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """The statements of the block commit together when it ends, or roll back when it raises.
        The one place that commits. A block inside a block joins the outer one."""
        if self._connection is not None:
            yield
            return
        connection = await self._acquire()
        still_open: Any = None  # the transaction, while it is neither committed nor rolled back
        try:
            transaction = connection.transaction()
            await self._bounded(transaction.start())
            still_open = transaction
            self._connection = connection
            try:
                yield
            except BaseException:
                if not self._failed:
                    await self._bounded(transaction.rollback())
                    still_open = None
                raise
            await self._bounded(transaction.commit())
            still_open = None
        finally:
            self._connection = None
            await self._release(connection, still_open)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Inside a transaction: statements whose failure (e.g. a unique violation) must not end
        the transaction; on an error it rolls back to here and goes on."""
        connection = self._connection
        if connection is None:
            raise RuntimeError("savepoint() is for use inside a transaction() block")
        savepoint = connection.transaction()
        await self._bounded(savepoint.start())
        try:
            yield
        except BaseException:
            await self._bounded(savepoint.rollback())
            self._failed = False  # rolled back to the savepoint: the connection is fine
            raise
        await self._bounded(savepoint.commit())

    def apart(self) -> "UnitOfWork":
        """A unit for statements that must commit on their own even while this one's transaction
        runs (Idempotency-Key claims): outside the gate, within this request's deadline."""
        return UnitOfWork(self.database, request_id=self.request_id, gated=False, deadline=self._deadline_at())

    # -- internals -------------------------------------------------------------------------

    def _deadline_at(self) -> float:
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self.database.request_timeout
        return self._deadline

    def _remaining(self) -> float:
        return max(self._deadline_at() - asyncio.get_running_loop().time(), 0.001)

    async def _run(self, method: str, statement: Statement, values: Mapping[str, Any]) -> Any:
        arguments = statement.arguments(values)
        connection = self._connection
        if connection is not None:  # inside a transaction() block
            try:
                return await getattr(connection, method)(statement.sql, *arguments, timeout=self._remaining())
            except BaseException:
                self._failed = True
                raise
        if self.database.always_in_transaction:
            async with self.transaction():
                return await self._run(method, statement, values)
        connection = await self._acquire()
        try:
            return await getattr(connection, method)(statement.sql, *arguments, timeout=self._remaining())
        except BaseException:
            self._failed = True
            raise
        finally:
            await self._release(connection, None)

    async def _acquire(self) -> Connection:
        deadline = self._deadline_at()
        self._failed = False
        waited = self.gated and await self.database.gate.enter(deadline)
        try:
            if self.gated and not waited:
                # Admitted at once: an idle connection is ready, or one is opened within
                # DB_CONNECT_TIMEOUT_SECONDS (no longer than DB_REQUEST_TIMEOUT_SECONDS); no timer.
                # Units outside the gate (claims, housekeeping) may find the whole pool taken, so
                # their wait is timed like a gated wait.
                return await self.database.source.acquire()
            try:
                async with asyncio.timeout_at(deadline):
                    return await self.database.source.acquire()
            except TimeoutError as timeout:
                raise DatabaseBusy("no database connection could be opened in time") from timeout
        except BaseException:
            if self.gated:
                self.database.gate.leave()
            raise

    async def _release(self, connection: Connection, transaction: Any) -> None:
        try:
            await self.database.source.release(connection, failed=self._failed, transaction=transaction)
        finally:
            if self.gated:
                self.database.gate.leave()

    async def _bounded(self, step: Any) -> None:
        try:
            async with asyncio.timeout_at(self._deadline_at()):
                await step
        except BaseException:
            self._failed = True
            raise


class Database:
    """The connections, the gate and the deadline every unit of work needs; built in the app's
    lifespan (Database.connect), closed on shutdown."""

    def __init__(self, source: ConnectionSource, settings: Settings) -> None:
        self.source = source
        self.gate = FairGate(settings.db_pool_size, settings.db_pool_timeout_seconds)
        self.request_timeout = settings.db_request_timeout_seconds
        # Behind PgBouncer (transaction mode) a statement outside a transaction is safe too: without
        # a statement cache (see create_pool) asyncpg sends each statement's Parse again in the same
        # packet as its Bind, Execute and Sync, so it never relies on a server connection's state
        # (tests/test_pgbouncer.py fails with the cache on).
        self.always_in_transaction = source.always_in_transaction

    @classmethod
    async def connect(cls, settings: Settings) -> Self:
        return cls(PoolSource(await create_pool(settings)), settings)

    def unit_of_work(self, request_id: str | None = None) -> UnitOfWork:
        return UnitOfWork(self, request_id=request_id)

    def pool_usage(self) -> tuple[int, int, int, int] | None:
        """Connections open, in use and most allowed, and requests waiting at the gate (metrics)."""
        if not isinstance(self.source, PoolSource):
            return None
        pool = self.source.pool
        size = pool.get_size()
        return size, size - pool.get_idle_size(), pool.get_max_size(), self.gate.waiting

    async def close(self) -> None:
        if isinstance(self.source, PoolSource):
            await self.source.pool.close()
