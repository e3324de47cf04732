import asyncio
import uuid
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import get_settings
from app.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    # Tests pass their own URL through config.attributes; everyone else uses the app's settings.
    url = config.attributes.get("database_url") or get_settings().database_url
    if not url:
        raise SystemExit("DATABASE_URL is not set (see .env.example, or use `make migrate`).")
    return str(url)


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    # One transaction per revision, each committed with its version: a revision may then rely on the
    # previous one's locks being gone (0005 validates constraints while reads and writes go on).
    context.configure(
        connection=connection, target_metadata=target_metadata, compare_type=True, transaction_per_migration=True
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    # The service's connect timeout and PgBouncer setting, but not its request-sized statement
    # timeout: a migration may rewrite a big table. (Migrations are the only code that runs SQL
    # through SQLAlchemy's engine; the service itself runs its statements on asyncpg.)
    settings = get_settings()
    connect_args: dict[str, Any] = {"timeout": settings.db_connect_timeout_seconds}
    if settings.db_pgbouncer:
        # PgBouncer in transaction mode: no prepared statements kept between transactions.
        connect_args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
        }
    engine = create_async_engine(database_url(), poolclass=pool.NullPool, connect_args=connect_args)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
