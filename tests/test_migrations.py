"""Alembic builds the schema from empty, removes it cleanly, and builds it again."""

import asyncio
import os
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests import databases

SCHEMA_QUERY = """
SELECT
  (SELECT array_agg(table_name::text ORDER BY table_name) FROM information_schema.tables
    WHERE table_schema = 'public') AS tables,
  (SELECT array_agg(typname::text ORDER BY typname) FROM pg_type t
    JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = 'public' AND t.typtype = 'e') AS enums,
  (SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes
    WHERE schemaname = 'public') AS indexes
"""


async def _schema(url: str) -> tuple[list[str], list[str], list[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(text(SCHEMA_QUERY))).one()
            return row.tables or [], row.enums or [], row.indexes or []
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def scratch_url(server_url: str) -> Iterator[str]:
    name = f"payment_service_migrations_{os.getpid()}"
    yield databases.create_database(server_url, name)
    databases.drop_database(server_url, name)


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    databases.migrate(scratch_url)
    tables, enums, indexes = asyncio.run(_schema(scratch_url))
    assert "payments" in tables and "alembic_version" in tables
    assert {"payment_status", "payment_provider"} <= set(enums)
    assert {
        "ix_payments_user_id_created_at_id",
        "ix_payments_created_at_id",
        "ix_payments_booking_id",
        "ix_payments_property_id",
        "ix_payments_payment_status",
        "ix_payments_provider",
        "uq_payments_payment_id",
        "uq_payments_checkout_session_id",
    } <= set(indexes)

    databases.downgrade(scratch_url, "base")
    assert asyncio.run(_schema(scratch_url)) == (["alembic_version"], [], ["alembic_version_pkc"])

    databases.migrate(scratch_url)
    assert asyncio.run(_schema(scratch_url)) == (tables, enums, indexes)
