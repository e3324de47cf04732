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


SEED = """
INSERT INTO payments (payment_id, checkout_session_id, payment_status, currency, amount_total, user_id,
                      provider, description, payment_method_types, created_at, updated_at)
VALUES ('pi_old_1', NULL, 'succeeded', 'USD', 99.99, 1, 'stripe', 'first', '{card}',
        '2025-01-01T00:00:00Z', '2025-01-02T00:00:00Z'),
       (NULL, 'cs_old_2', 'pending', 'JPY', 1500, 2, 'paypal', NULL, '{}',
        '2025-02-01T00:00:00Z', '2025-02-01T00:00:00Z')
"""
PAYMENT_COLUMNS = (
    "id, payment_id, checkout_session_id, payment_status::text, currency, amount_total, user_id, provider::text, "
    "description, payment_method_types, created_at, updated_at"
)


async def _fetch(url: str, query: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            return [tuple(row) for row in (await connection.execute(text(query))).all()]
    finally:
        await engine.dispose()


def test_integrity_revision_keeps_existing_payments(server_url: str) -> None:
    name = f"payment_service_migration_data_{os.getpid()}"
    url = databases.create_database(server_url, name)
    try:
        databases.migrate(url, "0001")
        asyncio.run(_fetch(url, SEED + " RETURNING id"))
        before = asyncio.run(_fetch(url, f"SELECT {PAYMENT_COLUMNS} FROM payments ORDER BY id"))

        databases.migrate(url, "0002")
        after = asyncio.run(_fetch(url, f"SELECT {PAYMENT_COLUMNS} FROM payments ORDER BY id"))
        assert after == before
        added = asyncio.run(_fetch(url, "SELECT version, metadata::text FROM payments ORDER BY id"))
        assert added == [(1, "{}"), (1, "{}")]
        history = asyncio.run(
            _fetch(
                url,
                "SELECT payment_id, from_status::text, to_status::text, actor, created_at "
                "FROM payment_status_history ORDER BY id",
            )
        )
        assert [(row[0], row[1], row[2], row[3]) for row in history] == [
            (before[0][0], None, "succeeded", "system:migration"),
            (before[1][0], None, "pending", "system:migration"),
        ]
        assert [row[4] for row in history] == [before[0][10], before[1][10]]

        databases.downgrade(url, "0001")
        assert asyncio.run(_fetch(url, f"SELECT {PAYMENT_COLUMNS} FROM payments ORDER BY id")) == before
        tables, enums, _ = asyncio.run(_schema(url))
        assert "payment_status_history" not in tables and "idempotency_keys" not in tables
        assert "idempotency_state" not in enums
        databases.migrate(url)
    finally:
        databases.drop_database(server_url, name)
