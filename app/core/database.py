"""Engine and session factory, built at start-up (in the app's lifespan) and disposed on shutdown."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from app.core.config import Settings


class DatabaseNotConfigured(RuntimeError):
    pass


def create_engine(settings: Settings, **options: Any) -> AsyncEngine:
    """The app's engine; `options` override create_async_engine arguments (e.g. poolclass)."""
    if settings.database_url is None:
        raise DatabaseNotConfigured(
            "DATABASE_URL is not set. Set it to postgresql+asyncpg://user:password@host:5432/db, "
            "or start the service with `make run`, which starts an embedded PostgreSQL."
        )
    connect_args: dict[str, Any] = {
        "timeout": settings.db_connect_timeout_seconds,
        # asyncpg's client-side limit; the server-side statement_timeout is set below.
        "command_timeout": settings.db_statement_timeout_seconds + 1,
    }
    if settings.db_pgbouncer:
        # PgBouncer in transaction mode hands each transaction to any server connection, so a
        # statement prepared on one is unknown on the next: no statement caches, and unique names
        # for the unnamed statements asyncpg still prepares. PgBouncer also refuses unknown startup
        # parameters, so statement_timeout must be set on the database role instead (see README).
        connect_args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
        }
    else:
        statement_timeout_ms = str(int(settings.db_statement_timeout_seconds * 1000))
        connect_args["server_settings"] = {"statement_timeout": statement_timeout_ms}
    pool_options: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_seconds,
    }
    if "poolclass" in options:
        pool_options = {}
    return create_async_engine(settings.database_url, connect_args=connect_args, **(pool_options | options))


def create_sessionmaker(bind: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind, expire_on_commit=False, autoflush=False)


def _autocommit(engine: AsyncEngine, settings: Settings) -> AsyncEngine:
    """The same pool in autocommit, so a single statement costs one round trip (no BEGIN or COMMIT).

    Not behind PgBouncer: asyncpg prepares a statement and then executes it in two steps, and
    outside a transaction PgBouncer may send the second step to another server connection."""
    return engine if settings.db_pgbouncer else engine.execution_options(isolation_level="AUTOCOMMIT")


def create_read_sessionmaker(engine: AsyncEngine, settings: Settings) -> async_sessionmaker[AsyncSession]:
    """Sessions for read-only requests that are not on the hot path (webhook events, readiness)."""
    return create_sessionmaker(_autocommit(engine, settings))


# SQLSTATEs meaning "the database cannot serve this now": statement timeout, admin shutdown, crash
# shutdown, cannot connect now, too many connections, and the connection exception class (08xxx).
_UNAVAILABLE_SQLSTATES = frozenset({"57014", "57P01", "57P02", "57P03", "53300"})


def is_database_unavailable(error: BaseException) -> bool:
    """True for errors that mean PostgreSQL is unreachable, restarting or overloaded (worth a 503
    and a retry), False for errors that are bugs."""
    if isinstance(error, SQLAlchemyTimeoutError | OSError | TimeoutError):
        return True  # pool exhausted, connection refused or reset, connect or command timeout
    if isinstance(error, asyncpg.InterfaceError):  # client-side: a closed connection, or a bug
        return "connection is closed" in str(error)
    if isinstance(error, asyncpg.PostgresError):  # raised by the driver itself (the hot GET routes)
        sqlstate = error.sqlstate or ""
        return sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate.startswith("08")
    if isinstance(error, DBAPIError):
        if error.connection_invalidated or isinstance(error, InterfaceError):
            return True
        sqlstate = getattr(error.orig, "sqlstate", None) or ""
        return sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate.startswith("08")
    return False


# An asyncpg.Connection (asyncpg ships no type hints).
DriverConnection = Any
DriverConnectionFactory = Callable[[], AbstractAsyncContextManager[DriverConnection]]


def request_gate(settings: Settings) -> asyncio.Semaphore:
    """Admits requests to the pool's DB_POOL_SIZE connections in arrival order.

    Without it, under more concurrent requests than connections, a connection handed back goes to
    whichever request asks next, so some waiters are overtaken again and again (p99 in seconds),
    and demand above DB_POOL_SIZE keeps opening and closing overflow connections. DB_MAX_OVERFLOW
    stays as headroom for the short side transactions that run outside the gate (Idempotency-Key
    claims, readiness checks, housekeeping), so they can never wait behind a request."""
    return asyncio.Semaphore(settings.db_pool_size)


def driver_connections(
    engine: AsyncEngine, settings: Settings, gate: asyncio.Semaphore | None, *, autocommit: bool = True
) -> DriverConnectionFactory:
    """The pool's own asyncpg connections, for the hottest statements, one per call: reads
    (admitted through the gate), Idempotency-Key claims and releases (gate=None: they run outside
    the request's transaction and must never wait behind a request), and, with autocommit=False,
    the create route's transaction (see DriverTransaction; its dependency passes the gate).

    The same pool, connections and settings as everything else (timeouts, statement cache), but the
    query goes straight to the driver: for a one-row SELECT, SQLAlchemy's execution layer (greenlet
    hop, cursor adapter, result rows) cost as much CPU as asyncpg itself. Behind PgBouncer an
    autocommit caller's statements run in a short transaction (see _autocommit)."""
    in_transaction = settings.db_pgbouncer and autocommit
    dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    async def checkout() -> PoolProxiedConnection:
        try:
            return await engine.raw_connection()
        except dbapi_error as error:  # e.g. cannot connect: wrapped as engine.connect() would
            raise DBAPIError.instance(None, None, error, dbapi_error, dialect=engine.dialect) from error

    @asynccontextmanager
    async def driver_connection() -> AsyncIterator[DriverConnection]:
        async with gate or nullcontext():
            pooled = await checkout()
            while _driver(pooled).is_closed():  # the server went away meanwhile (a restart)
                await greenlet_spawn(_check_in, pooled, ConnectionError("connection closed while idle"))
                pooled = await checkout()
            connection = _driver(pooled)
            failure: BaseException | None = None
            try:
                if in_transaction:
                    async with connection.transaction():
                        yield connection
                else:
                    yield connection
            except BaseException as error:
                failure = error
                raise
            finally:
                # Checking in may talk to the server (a rollback, a close): SQLAlchemy's sync pool
                # code does that through a greenlet.
                await greenlet_spawn(_check_in, pooled, failure)

    return driver_connection


def _driver(pooled: PoolProxiedConnection) -> DriverConnection:
    return pooled.driver_connection


def _check_in(pooled: PoolProxiedConnection, failure: BaseException | None) -> None:
    # After any failure the pool replaces the connection. Even an error the server reports can leave
    # it unusable: a shutdown (57P01) arriving mid-statement leaves asyncpg's protocol waiting for
    # a reply that never comes ("another operation is in progress" for the next user) before the
    # socket is seen closed. Failures are rare on these statements, so a reconnect costs little.
    if failure is not None:
        pooled.invalidate(failure if isinstance(failure, Exception) else None)
    pooled.close()


class DriverTransaction:
    """The request's transaction on a driver connection, begun on first use like a Session's: no
    connection is taken until a statement needs one. commit() and rollback() end it; a statement
    after either begins the next. close() rolls back whatever is still open and hands the connection
    back."""

    def __init__(self, connect: DriverConnectionFactory) -> None:
        self._connect = connect
        self._checkout: AbstractAsyncContextManager[DriverConnection] | None = None
        self._connection: DriverConnection | None = None
        self._transaction: Any = None  # an asyncpg Transaction while one is open

    async def connection(self) -> DriverConnection:
        """The connection, in an open transaction."""
        if self._connection is None:
            checkout = self._connect()
            self._connection = await checkout.__aenter__()
            self._checkout = checkout
        if self._transaction is None:
            transaction = self._connection.transaction()
            await transaction.start()
            self._transaction = transaction
        return self._connection

    async def commit(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            await transaction.commit()

    async def rollback(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            await transaction.rollback()

    async def close(self, error: BaseException | None = None) -> None:
        """Roll back what is open (nothing, after a commit) and check the connection in; `error`
        is what ended the request, so a failed connection is replaced rather than reused."""
        checkout, self._checkout, self._connection = self._checkout, None, None
        if checkout is None:
            return
        try:
            await self.rollback()
        except BaseException as rollback_error:
            error = error or rollback_error
            raise
        finally:
            if error is None:
                await checkout.__aexit__(None, None, None)
            else:
                await checkout.__aexit__(type(error), error, error.__traceback__)
