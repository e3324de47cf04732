"""Alembic builds the schema from empty, removes it cleanly, and builds it again."""

import asyncio
import os
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
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


REFUNDS_SEED = """
WITH seeded AS (
    INSERT INTO payments (payment_id, checkout_session_id, payment_status, currency, amount_total, user_id,
                          provider, description, payment_method_types, metadata, version, created_at, updated_at)
    VALUES ('pi_refunded_usd', NULL, 'refunded', 'USD', 99.99, 1, 'stripe', 'refunded in dollars', '{card}',
            '{"booking": "b-1"}', 3, '2025-01-01T00:00:00Z', '2025-01-05T10:00:00.123456Z'),
           ('pi_paid_jpy', NULL, 'succeeded', 'JPY', 1500, 2, 'paypal', NULL, '{}', '{}', 2,
            '2025-02-01T00:00:00Z', '2025-02-01T00:05:00Z'),
           (NULL, 'cs_pending_eur', 'pending', 'EUR', 20.00, 3, 'square', 'not paid yet', '{}', '{}', 1,
            '2025-03-01T00:00:00Z', '2025-03-01T00:00:00Z'),
           ('pi_refunded_kwd', 'cs_refunded_kwd', 'refunded', 'KWD', 1.250, 4, 'razorpay', NULL, '{card,knet}',
            '{}', 3, '2025-04-01T00:00:00Z', '2025-04-03T12:34:56.789012Z')
    RETURNING id, coalesce(payment_id, checkout_session_id) AS gateway
)
INSERT INTO payment_status_history (payment_id, from_status, to_status, actor, event_id, created_at)
SELECT seeded.id, steps.from_status::payment_status, steps.to_status::payment_status, steps.actor, steps.event_id,
       steps.at::timestamptz
FROM (VALUES
    ('pi_refunded_usd', NULL, 'pending', 'user:1', NULL, '2025-01-01T00:00:00Z'),
    ('pi_refunded_usd', 'pending', 'succeeded', 'stripe', 'evt_paid_usd', '2025-01-01T00:01:00Z'),
    ('pi_refunded_usd', 'succeeded', 'refunded', 'service:9', NULL, '2025-01-05T10:00:00.123456Z'),
    ('pi_paid_jpy', NULL, 'pending', 'user:2', NULL, '2025-02-01T00:00:00Z'),
    ('pi_paid_jpy', 'pending', 'succeeded', 'stripe', 'evt_paid_jpy', '2025-02-01T00:05:00Z'),
    ('cs_pending_eur', NULL, 'pending', 'user:3', NULL, '2025-03-01T00:00:00Z'),
    ('pi_refunded_kwd', NULL, 'succeeded', 'service:9', NULL, '2025-04-01T00:00:00Z'),
    ('pi_refunded_kwd', 'succeeded', 'refunded', 'stripe', 'evt_refund_kwd', '2025-04-03T12:34:56.789012Z')
) AS steps (gateway, from_status, to_status, actor, event_id, at)
JOIN seeded USING (gateway)
RETURNING id
"""
# Whole rows, as exact text (NUMERIC keeps its scale, timestamps their microseconds), less the columns
# that revision 0004 adds.
PAYMENT_ROWS = "SELECT (to_jsonb(p) - 'amount_refunded' - 'amount_refund_pending')::text FROM payments p ORDER BY id"
HISTORY_ROWS = "SELECT to_jsonb(h)::text FROM payment_status_history h ORDER BY id"
REFUND_CHECKS = ("ck_payments_refunds_within_total", "ck_payments_refunded_in_full")


async def _check_violation(url: str, statement: str) -> str:
    """The name of the constraint that refuses `statement` (rolled back)."""
    with pytest.raises(IntegrityError) as refused:
        await _fetch(url, statement)
    return str(refused.value.orig)


def test_refunds_revision_backfills_refunded_payments(server_url: str) -> None:
    """0004 keeps every payment and its history as they were, gives each refunded payment one
    succeeded refund of all of it (to the minor unit, at the time it was refunded), adds CHECK
    constraints that are validated and enforced, and its downgrade leaves the 0003 rows exactly."""
    name = f"payment_service_migration_refunds_{os.getpid()}"
    url = databases.create_database(server_url, name)
    try:
        databases.migrate(url, "0003")
        asyncio.run(_fetch(url, REFUNDS_SEED))
        before = asyncio.run(_fetch(url, PAYMENT_ROWS))
        history = asyncio.run(_fetch(url, HISTORY_ROWS))
        assert len(before) == 4 and len(history) == 8

        databases.migrate(url)
        assert asyncio.run(_fetch(url, PAYMENT_ROWS)) == before
        assert asyncio.run(_fetch(url, HISTORY_ROWS)) == history
        sums = asyncio.run(
            _fetch(
                url,
                "SELECT coalesce(payment_id, checkout_session_id), amount_total::text, amount_refunded::text, "
                "amount_refund_pending::text FROM payments ORDER BY id",
            )
        )
        assert sums == [
            ("pi_refunded_usd", "99.9900", "99.9900", "0.0000"),
            ("pi_paid_jpy", "1500.0000", "0.0000", "0.0000"),
            ("cs_pending_eur", "20.0000", "0.0000", "0.0000"),
            ("pi_refunded_kwd", "1.2500", "1.2500", "0.0000"),
        ]
        refunds = asyncio.run(
            _fetch(
                url,
                "SELECT coalesce(p.payment_id, p.checkout_session_id), r.provider::text, "
                "p.provider::text, r.refund_id, r.amount::text, r.currency, r.status::text, r.reason::text, "
                "r.metadata::text, r.failure_reason, r.actor, r.request_id, r.version, r.created_at = p.updated_at, "
                "r.updated_at = p.updated_at "
                "FROM refunds r JOIN payments p ON p.id = r.payment_id ORDER BY r.id",
            )
        )
        assert refunds == [
            ("pi_refunded_usd", "stripe", "stripe", None, "99.9900", "USD", "succeeded", None, "{}", None,
             "system:migration", None, 1, True, True),
            ("pi_refunded_kwd", "razorpay", "razorpay", None, "1.2500", "KWD", "succeeded", None, "{}", None,
             "system:migration", None, 1, True, True),
        ]  # fmt: skip

        constraints = asyncio.run(
            _fetch(
                url,
                "SELECT conname::text, contype::text, convalidated FROM pg_constraint "
                "WHERE conrelid = 'payments'::regclass AND conname LIKE 'ck_payments_refund%' ORDER BY conname",
            )
        )
        assert constraints == [(name, "c", True) for name in sorted(REFUND_CHECKS)]
        breaking = {  # each statement breaks one constraint only
            "ck_payments_refunds_within_total": [
                "UPDATE payments SET amount_refunded = amount_total + 0.0001 WHERE payment_id = 'pi_paid_jpy'",
                "UPDATE payments SET amount_refund_pending = 0.0001 WHERE payment_id = 'pi_refunded_kwd'",
                "UPDATE payments SET amount_refund_pending = -1 WHERE payment_id = 'pi_paid_jpy'",
                "UPDATE payments SET amount_refunded = 1000, amount_refund_pending = 500.0001 "
                "WHERE payment_id = 'pi_paid_jpy'",
            ],
            "ck_payments_refunded_in_full": [
                "UPDATE payments SET payment_status = 'refunded' WHERE payment_id = 'pi_paid_jpy'",
                "UPDATE payments SET amount_refunded = 1.2499 WHERE payment_id = 'pi_refunded_kwd'",
            ],
        }
        for constraint, statements in breaking.items():
            for statement in statements:
                assert constraint in asyncio.run(_check_violation(url, statement)), statement
        assert asyncio.run(_fetch(url, PAYMENT_ROWS)) == before  # every refused statement was rolled back

        databases.downgrade(url, "0003")
        assert asyncio.run(_fetch(url, "SELECT to_jsonb(p)::text FROM payments p ORDER BY id")) == before
        assert asyncio.run(_fetch(url, HISTORY_ROWS)) == history
        tables, enums, _ = asyncio.run(_schema(url))
        assert "refunds" not in tables
        assert {"refund_status", "refund_reason"}.isdisjoint(enums)
        assert (
            asyncio.run(_fetch(url, "SELECT conname FROM pg_constraint WHERE conname LIKE 'ck_payments_refund%'")) == []
        )

        databases.migrate(url)
        again = asyncio.run(_fetch(url, "SELECT payment_id, amount::text, actor FROM refunds ORDER BY id"))
        assert [row[1:] for row in again] == [("99.9900", "system:migration"), ("1.2500", "system:migration")]
    finally:
        databases.drop_database(server_url, name)
