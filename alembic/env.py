import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, pool

from app.core.config import get_settings
from app.core.database import create_engine
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
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    # The app's own engine settings (timeouts, and DB_PGBOUNCER's statement handling) on a NullPool.
    # No 5 s request-sized statement timeout here: a migration may rewrite a big table.
    settings = get_settings().model_copy(update={"database_url": database_url(), "db_statement_timeout_seconds": 3600})
    engine = create_engine(settings, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
