"""The outbox: every committed change writes exactly its events, in the change's transaction, as
CloudEvents whose data is the payment (or refund) exactly as the API returned it; nothing for
no-ops, replays and refusals. And the admins' catch-up list, in commit order after a cursor."""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import httpx
import pytest
from aio_pika.abc import AbstractExchange
from pydantic import SecretStr
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import relay as relay_module
from app.core.config import Settings
from app.core.database import Database
from app.core.metrics import EVENTS_OLDEST_UNPUBLISHED, REGISTRY
from app.models import Event
from app.models import PaymentStatus as S
from app.relay import Relay
from app.services.housekeeping import purge_old_events
from tests.conftest import TokenFactory, make_payment
from tests.helpers import assert_problem
from tests.stripe_events import ack, deliver, stripe_event

PAYMENTS = "/api/v1/payments/"
EVENTS = "/api/v1/events"
ADMIN = 77


async def written(db: AsyncSession, payment_id: int | None = None) -> list[tuple[Any, ...]]:
    """(type, previous_status, actor) of the events written, in id order."""
    query = select(Event.type, Event.previous_status, Event.actor).order_by(Event.id)
    if payment_id is not None:
        query = query.where(Event.payment_id == payment_id)
    return [tuple(row) for row in (await db.execute(query)).all()]


async def event_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Event)) or 0)


async def listed(client: httpx.AsyncClient, auth: TokenFactory, **params: Any) -> dict[str, Any]:
    response = await client.get(EVENTS, params=params, headers=auth(ADMIN, admin=True))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def new_payment(**fields: Any) -> dict[str, Any]:
    return {"payment_id": "pi_ev_1", "provider": "stripe", "currency": "USD", "amount_total": "80.00", **fields}


async def test_each_api_change_writes_its_event_with_the_payment_as_returned(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    service = auth(9, service=True)
    answers: list[dict[str, Any]] = []
    created = await client.post(PAYMENTS, json=new_payment(), headers=auth(1))
    answers.append(created.json())
    url = f"{PAYMENTS}{created.json()['id']}"
    answers.append((await client.put(url, json={"description": "two nights"}, headers=auth(1))).json())
    for target in ("processing", "succeeded"):
        answers.append((await client.patch(f"{url}/status", json={"payment_status": target}, headers=service)).json())
    refund = await client.post(f"{url}/refunds", json={"amount": "30.00"}, headers=service)
    settled = await client.patch(
        f"{url}/refunds/{refund.json()['id']}/status", json={"status": "succeeded"}, headers=service
    )
    answers.append((await client.patch(f"{url}/status", json={"payment_status": "refunded"}, headers=service)).json())

    assert await written(db) == [
        ("payment.created", None, "user:1"),
        ("payment.updated", None, "user:1"),
        ("payment.processing", "pending", "service:9"),
        ("payment.succeeded", "processing", "service:9"),
        ("refund.created", None, "service:9"),
        ("refund.succeeded", "pending", "service:9"),
        ("refund.created", None, "service:9"),  # the rest, refunded by the move to refunded
        ("refund.succeeded", None, "service:9"),
        ("payment.refunded", "succeeded", "service:9"),
    ]
    items = (await listed(client, auth))["items"]
    assert [item["type"] for item in items] == [row[0] for row in await written(db)]
    payment_events = [item for item in items if item["type"].startswith("payment.")]
    # data.object is byte for byte what the API answered for that change, version included.
    assert [item["data"]["object"] for item in payment_events] == answers
    refund_objects = [item["data"]["object"] for item in items if item["type"].startswith("refund.")]
    assert refund_objects[0] == refund.json() and refund_objects[1] == settled.json()
    assert {item["subject"] for item in items} == {f"payments/{created.json()['id']}"}
    assert items[0]["data"]["request_id"] == created.headers["x-request-id"]


async def test_every_event_is_a_valid_cloudevent(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    await client.post(PAYMENTS, json=new_payment(), headers=auth(1))
    [event] = (await listed(client, auth))["items"]
    # CloudEvents 1.0's required attributes, and the optional ones this service sets.
    assert event["specversion"] == "1.0"
    assert UUID(event["id"]) and event["source"] == "/payment-service" and event["type"] == "payment.created"
    assert event["datacontenttype"] == "application/json"
    assert datetime.fromisoformat(event["time"]).tzinfo is not None
    assert set(event) == {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "position",
        "data",
    }
    one = await client.get(f"{EVENTS}/{event['id']}", headers=auth(ADMIN, admin=True))
    assert one.json() == event


async def test_no_ops_replays_and_refusals_write_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    service = {**auth(9, service=True)}
    keyed = {**auth(1), "Idempotency-Key": "create-once"}
    created = await client.post(PAYMENTS, json=new_payment(), headers=keyed)
    url = f"{PAYMENTS}{created.json()['id']}"
    before = await event_count(db)
    assert (await client.post(PAYMENTS, json=new_payment(), headers=keyed)).headers["idempotent-replayed"] == "true"
    assert (await client.post(PAYMENTS, json=new_payment(), headers=auth(1))).status_code == 409  # duplicate
    assert (await client.patch(f"{url}/status", json={"payment_status": "pending"}, headers=service)).status_code == 200
    assert (await client.put(url, json={"amount_total": "80.00"}, headers=auth(1))).status_code == 200  # unchanged
    assert (
        await client.patch(f"{url}/status", json={"payment_status": "refunded"}, headers=service)
    ).status_code == 409
    assert (await client.post(f"{url}/refunds", json={}, headers=service)).status_code == 409  # not succeeded
    assert (await client.put(url, json={"payment_id": "pi_other"}, headers=auth(1))).status_code == 409  # immutable
    assert await event_count(db) == before == 1


async def test_webhook_changes_write_events_as_stripe_and_anomalies_are_events(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, amount="99.99", payment_id="pi_3QcsPaymentIntent")
    for event in (
        stripe_event("payment_intent.succeeded", "evt_ok"),
        stripe_event("payment_intent.succeeded", "evt_bad", amount=1),
    ):
        assert (await deliver(client, event)).status_code == 200
    assert await written(db, payment.id) == [
        ("payment.succeeded", "pending", "stripe"),
        ("payment.anomaly", None, "stripe"),
    ]
    detail = await db.scalar(select(Event.detail).where(Event.type == "payment.anomaly"))
    assert detail is not None and "amount" in detail


async def test_the_list_is_for_admins_in_position_order_with_filters_and_a_cursor(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    ids = [
        (await client.post(PAYMENTS, json=new_payment(payment_id=f"pi_ev_{n}"), headers=auth(1))).json()["id"]
        for n in range(3)
    ]
    await client.patch(f"{PAYMENTS}{ids[1]}/status", json={"payment_status": "canceled"}, headers=auth(1))
    first = await listed(client, auth, size=2)
    assert [item["data"]["object"]["id"] for item in first["items"]] == ids[:2]
    assert [item["position"] for item in first["items"]] == sorted(item["position"] for item in first["items"])
    rest = await listed(client, auth, cursor=first["next_cursor"])
    assert [(item["type"], item["data"]["object"]["id"]) for item in rest["items"]] == [
        ("payment.created", ids[2]),
        ("payment.canceled", ids[1]),
    ]
    assert (await listed(client, auth, cursor=rest["next_cursor"])) == {"items": [], "next_cursor": rest["next_cursor"]}
    assert [item["type"] for item in (await listed(client, auth, payment_id=ids[1]))["items"]] == [
        "payment.created",
        "payment.canceled",
    ]
    assert len((await listed(client, auth, type="payment.canceled"))["items"]) == 1
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert (await listed(client, auth, created_from=future))["items"] == []

    for headers in (auth(1), auth(9, service=True)):
        assert_problem(await client.get(EVENTS, headers=headers), 403, "/forbidden")
    assert_problem(await client.get(EVENTS, params={"type": "payment.nope"}, headers=auth(ADMIN, admin=True)), 422)
    assert_problem(await client.get(EVENTS, params={"cursor": -1}, headers=auth(ADMIN, admin=True)), 422)
    missing = await client.get(f"{EVENTS}/00000000-0000-0000-0000-000000000000", headers=auth(ADMIN, admin=True))
    assert_problem(missing, 404, "/event-not-found")


async def test_old_events_are_purged_and_unpublished_ones_kept_while_a_broker_is_configured(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, test_database: Database
) -> None:
    for n in range(3):
        await client.post(PAYMENTS, json=new_payment(payment_id=f"pi_old_{n}"), headers=auth(1))
    old = datetime.now(UTC) - timedelta(days=31)
    await db.execute(update(Event).values(created_at=old))
    await db.execute(text("UPDATE events SET published_at = now() WHERE id = (SELECT min(id) FROM events)"))
    assert await purge_old_events(test_database, timedelta(days=30), keep_unpublished=True) == 1
    assert await event_count(db) == 2
    # The event with the highest position stays, so positions never start again below a cursor.
    assert await purge_old_events(test_database, timedelta(days=30), keep_unpublished=False) == 1
    kept = await db.scalar(select(Event.position))
    assert kept is not None
    cursor = (await listed(client, auth))["next_cursor"]
    assert cursor == kept
    await client.post(PAYMENTS, json=new_payment(payment_id="pi_new"), headers=auth(1))
    after = await listed(client, auth, cursor=cursor)
    assert [item["data"]["object"]["payment_id"] for item in after["items"]] == ["pi_new"]
    assert after["items"][0]["position"] == kept + 1


@pytest.mark.parametrize("status", [S.FAILED])
async def test_a_move_back_to_pending_is_its_own_event(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, status: S
) -> None:
    payment = await make_payment(db, user_id=1, status=status)
    response = await client.patch(
        f"{PAYMENTS}{payment.id}/status", json={"payment_status": "pending"}, headers=auth(9, service=True)
    )
    assert response.status_code == 200
    assert await written(db, payment.id) == [("payment.pending", "failed", "service:9")]


class SlowExchange:
    """A broker whose every confirm takes `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.published: list[str] = []

    async def publish(self, message: Any, routing_key: str, **options: Any) -> None:
        await asyncio.sleep(self.seconds)
        self.published.append(message.message_id)


async def test_a_slow_broker_makes_rounds_smaller_not_endless(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    db: AsyncSession,
    test_database: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With confirms slower than a round's database deadline allows for a whole batch, a round
    publishes what fits, marks exactly that, and the next round goes on from there."""
    for n in range(8):
        await client.post(PAYMENTS, json=new_payment(payment_id=f"pi_slow_{n}"), headers=auth(1))
    monkeypatch.setattr(relay_module, "ROUND_SECONDS", 0.6)
    monkeypatch.setattr(relay_module, "SENDING_SECONDS", 0.2)
    relay = Relay(test_database, settings.model_copy(update={"events_broker_url": SecretStr("amqp://unused/")}))
    exchange = SlowExchange(0.08)  # 8 events: 0.64 s, past the round's deadline
    first = await relay.publish_round(cast(AbstractExchange, exchange))
    assert 0 < first < 8
    published = await db.scalars(select(Event.event_id).where(Event.published_at.is_not(None)).order_by(Event.id))
    assert [str(event_id) for event_id in published] == exchange.published
    while (await relay.publish_round(cast(AbstractExchange, exchange))) > 0:
        pass
    assert len(exchange.published) == len(set(exchange.published)) == 8


async def test_linking_a_stripe_refund_id_is_a_refund_updated_event(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, status=S.SUCCEEDED, amount="99.99", payment_id="pi_3QcsPaymentIntent")
    refund = await client.post(
        f"{PAYMENTS}{payment.id}/refunds", json={"amount": "40.00"}, headers=auth(9, service=True)
    )
    event = stripe_event("refund.updated", "evt_link", id="re_link", amount=4000, status="pending")
    ack(await deliver(client, event), "applied")
    assert await written(db, payment.id) == [("refund.created", None, "service:9"), ("refund.updated", None, "stripe")]
    items = (await listed(client, auth, type="refund.updated"))["items"]
    assert [(item["data"]["object"]["id"], item["data"]["object"]["refund_id"]) for item in items] == [
        (refund.json()["id"], "re_link")
    ]


async def test_event_times_are_utc_whatever_the_session_time_zone(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await db.execute(text("SET TIME ZONE 'America/New_York'"))
    created = await client.post(PAYMENTS, json=new_payment(), headers=auth(1))
    [event] = (await listed(client, auth))["items"]
    assert event["data"]["object"] == created.json()
    assert event["data"]["object"]["created_at"].endswith("Z")


async def test_a_huge_cursor_is_a_422_not_a_500(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    response = await client.get(EVENTS, params={"cursor": 2**63}, headers=auth(ADMIN, admin=True))
    assert_problem(response, 422, "/validation-error")


async def test_the_relay_reports_the_backlog_while_the_broker_is_away(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, test_database: Database, settings: Settings
) -> None:
    await client.post(PAYMENTS, json=new_payment(), headers=auth(1))
    await db.execute(update(Event).values(created_at=datetime.now(UTC) - timedelta(minutes=5)))
    EVENTS_OLDEST_UNPUBLISHED.set(0)
    unreachable = settings.model_copy(update={"events_broker_url": SecretStr("amqp://guest:guest@127.0.0.1:1/")})
    task = asyncio.create_task(Relay(test_database, unreachable).run())
    try:
        async with asyncio.timeout(10):
            while (REGISTRY.get_sample_value("events_oldest_unpublished_age_seconds") or 0) < 290:
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await db.scalar(select(func.count()).select_from(Event).where(Event.published_at.is_(None))) == 1
