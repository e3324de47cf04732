"""Engine and session factory, built at start-up (in the app's lifespan) and disposed on shutdown."""

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.core.config import Settings


class DatabaseNotConfigured(RuntimeError):
    pass


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.database_url is None:
        raise DatabaseNotConfigured(
            "DATABASE_URL is not set. Set it to postgresql+asyncpg://user:password@host:5432/db, "
            "or start the service with `make run`, which starts an embedded PostgreSQL."
        )
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
    )


def create_sessionmaker(bind: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind, expire_on_commit=False, autoflush=False)


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for read-only requests, on the same pool but in autocommit: each SELECT runs on its
    own, without the BEGIN and COMMIT round trips a transaction would cost."""
    return create_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))
