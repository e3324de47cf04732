from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, PaymentStatus, PaymentStatusHistory, Refund, WebhookEvent

PROBLEM_JSON = "application/problem+json"


async def stored(db: AsyncSession, payment_id: int) -> Payment | None:
    """The payment as it is in the database now (bypassing the session's identity map)."""
    return await db.get(Payment, payment_id, populate_existing=True)


async def payment_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Payment)) or 0)


def assert_problem(response: httpx.Response, status: int, type_suffix: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    if type_suffix is not None:
        assert body["type"].endswith(type_suffix), body["type"]
    assert "Traceback" not in response.text
    return body


def error_locations(body: dict[str, Any]) -> set[str]:
    return {error["location"] for error in body["errors"]}


# For every payment: the refunds that are not failed or canceled stay within amount_total, its sums
# are the sums of its succeeded and of its pending refunds, every refund is in its currency, and a
# payment that had refunds is refunded exactly when they refunded all of it. No rows: it holds.
REFUND_INVARIANT_BROKEN = """
SELECT p.id, p.payment_status::text, p.amount_total, p.amount_refunded, p.amount_refund_pending,
       array_agg(r.status::text || ' ' || r.amount::text ORDER BY r.id) AS refunds
FROM payments p LEFT JOIN refunds r ON r.payment_id = p.id
GROUP BY p.id
HAVING coalesce(sum(r.amount) FILTER (WHERE r.status NOT IN ('failed', 'canceled')), 0) > p.amount_total
    OR p.amount_refunded <> coalesce(sum(r.amount) FILTER (WHERE r.status = 'succeeded'), 0)
    OR p.amount_refund_pending <> coalesce(sum(r.amount) FILTER (WHERE r.status = 'pending'), 0)
    OR coalesce(bool_or(r.currency <> p.currency), false)
    OR (count(r.id) > 0 AND (p.payment_status = 'refunded') <> (p.amount_refunded = p.amount_total))
"""


async def assert_refund_invariant(db: AsyncSession) -> None:
    broken = (await db.execute(text(REFUND_INVARIANT_BROKEN))).all()
    assert broken == [], broken


async def refund_sums(db: AsyncSession, payment_id: int) -> tuple[PaymentStatus, Decimal, Decimal, int]:
    """The payment's status, amount_refunded, amount_refund_pending and version, as stored now."""
    payment = await stored(db, payment_id)
    assert payment is not None
    return payment.payment_status, payment.amount_refunded, payment.amount_refund_pending, payment.version


async def recorded_events(db: AsyncSession) -> list[tuple[Any, ...]]:
    """(event_id, event_type, outcome, payment_id, delivery_count) of the provider events recorded."""
    statement = select(WebhookEvent).order_by(WebhookEvent.id).execution_options(populate_existing=True)
    return [
        (e.event_id, e.event_type, e.outcome.value, e.payment_id, e.delivery_count) for e in await db.scalars(statement)
    ]


async def history(db: AsyncSession, payment_id: int) -> list[tuple[Any, ...]]:
    """(from_status, to_status, actor, event_id) of the payment's status history, oldest first."""
    statement = (
        select(PaymentStatusHistory)
        .where(PaymentStatusHistory.payment_id == payment_id)
        .order_by(PaymentStatusHistory.id)
    )
    return [(h.from_status, h.to_status, h.actor, h.event_id) for h in await db.scalars(statement)]


async def refund_rows(db: AsyncSession, payment_id: int | None = None) -> list[tuple[Any, ...]]:
    """(amount, status, refund_id, actor) of the payment's refunds (every refund without one), oldest first."""
    statement = select(Refund).order_by(Refund.id).execution_options(populate_existing=True)
    if payment_id is not None:
        statement = statement.where(Refund.payment_id == payment_id)
    return [(r.amount, r.status, r.refund_id, r.actor) for r in await db.scalars(statement)]
