"""The FastAPI application: `uvicorn app.main:app`."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from app.api import meta
from app.api.middleware import RequestBodyMiddleware, RequestObservabilityMiddleware
from app.api.problems import install_problem_handlers
from app.api.rate_limit import UserWriteLimit
from app.api.v1 import routers as api_routers
from app.core.config import SERVICE_NAME, SERVICE_VERSION, Settings, get_settings
from app.core.database import Database
from app.core.logging import configure_logging
from app.core.metrics import POOL
from app.core.security import TokenVerifier
from app.services.housekeeping import purge_periodically


def attach_database(app: FastAPI, database: Database) -> None:
    """The database every request's unit of work comes from (tests attach their own)."""
    app.state.database = database
    POOL.usage = database.pool_usage


def operation_id(route: APIRoute) -> str:
    """Each operation's OpenAPI operationId: its route function's name (`create_payment`), stable
    and plain, so generated clients get readable method names (FastAPI's default appends the path
    and method: `create_payment_api_v1_payments__post`)."""
    return route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        database = await Database.connect(settings)
        attach_database(app, database)
        housekeeping = purge_periodically(
            database,
            settings.idempotency_purge_interval_seconds,
            events_retention=timedelta(days=settings.events_retention_days),
            keep_unpublished_events=settings.events_broker_url is not None,
        )
        tasks = [asyncio.create_task(housekeeping)]
        if settings.events_relay_in_process and settings.events_broker_url is not None:
            # Imported only here: the API itself never talks to the broker, so a process without the
            # relay does not load the AMQP client (about 0.13 s of start-up).
            from app.relay import Relay

            tasks.append(asyncio.create_task(Relay(database, settings).run()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            await database.close()

    app = FastAPI(
        title=SERVICE_NAME,
        version=SERVICE_VERSION,
        description="Records the payments of a property-booking platform.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)
    app.state.user_write_limit = UserWriteLimit(settings.user_write_limit_per_minute)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            # Browsers hide response headers from scripts unless listed: If-Match needs the ETag.
            expose_headers=["ETag", "X-Request-ID", "Idempotent-Replayed", "Retry-After"],
        )
    app.add_middleware(
        RequestBodyMiddleware, max_bytes=settings.max_body_bytes, timeout=settings.request_body_timeout_seconds
    )
    app.add_middleware(RequestObservabilityMiddleware)  # added last: runs first, sees every response
    install_problem_handlers(app)
    # The API first: routes are matched in order, and these are the ones under load.
    for router in api_routers:
        app.include_router(router)
    meta.install_docs(app)
    app.include_router(meta.router)
    return app


app = create_app()
