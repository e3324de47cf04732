"""Create and drop the throwaway databases the suite runs on (real PostgreSQL, never SQLite)."""

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_TEST_DATA_DIR = PROJECT_ROOT / ".data" / "test-postgres"


def server_url() -> str:
    """TEST_DATABASE_URL when set, else an embedded PostgreSQL started for the tests."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    from scripts.embedded_postgres import asyncpg_url

    return asyncpg_url(EMBEDDED_TEST_DATA_DIR)


async def execute(url: str, *statements: str) -> None:
    """Run statements on a connection of their own, each committed at once."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


# Backends of the current database waiting for a lock: how the tests see that requests overlap.
LOCK_WAITERS = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"


async def rows(url: str, query: str, **values: Any) -> list[Any]:
    """The rows of one query, on a connection of its own (to check what live servers committed)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(query), values)).all())
    finally:
        await engine.dispose()


def create_database(base_url: str, name: str) -> str:
    """A new empty database on the server of `base_url`; returns its URL."""
    asyncio.run(execute(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'))
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(base_url: str, name: str) -> None:
    asyncio.run(execute(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


@contextmanager
def migrated_database(base_url: str, purpose: str) -> Iterator[str]:
    """A fresh database `payment_service_<purpose>_<pid>`, migrated to head, dropped afterwards."""
    name = f"payment_service_{purpose}_{os.getpid()}"
    url = create_database(base_url, name)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(base_url, name)
