import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, WebhookEvent
from app.models import PaymentStatus as S
from tests.conftest import STRIPE_OLD_SECRET, STRIPE_SECRET, TokenFactory, make_payment
from tests.helpers import assert_problem, history, recorded_events, stored
from tests.stripe_events import WEBHOOK_URL, ack, deliver, encode, sign, stripe_event

URL = WEBHOOK_URL
EVENTS = "/api/v1/webhooks/events"


# Each row of the table: event, object fields, the status the payment starts in, the status it ends in.
TABLE = [
    ("checkout.session.completed", {"payment_status": "paid"}, S.PENDING, S.SUCCEEDED),
    ("checkout.session.completed", {"payment_status": "unpaid"}, S.PENDING, S.PROCESSING),
    ("checkout.session.async_payment_succeeded", {"payment_status": "paid"}, S.PROCESSING, S.SUCCEEDED),
    ("checkout.session.async_payment_failed", {"payment_status": "unpaid"}, S.PROCESSING, S.FAILED),
    ("checkout.session.expired", {"status": "expired", "payment_status": "unpaid"}, S.PENDING, S.CANCELED),
    ("payment_intent.processing", {"status": "processing"}, S.PENDING, S.PROCESSING),
    ("payment_intent.succeeded", {"status": "succeeded"}, S.PROCESSING, S.SUCCEEDED),
    ("payment_intent.payment_failed", {"status": "requires_payment_method"}, S.PROCESSING, S.FAILED),
    ("payment_intent.canceled", {"status": "canceled"}, S.PENDING, S.CANCELED),
]


@pytest.mark.parametrize(("event_type", "fields", "start", "end"), TABLE)
async def test_each_event_moves_the_payment(
    client: httpx.AsyncClient, db: AsyncSession, event_type: str, fields: dict[str, Any], start: S, end: S
) -> None:
    payment = await make_payment(
        db,
        user_id=1,
        status=start,
        amount="99.99",
        payment_id="pi_3QcsPaymentIntent",
        checkout_session_id="cs_test_a1b2c3",
    )
    ack(await deliver(client, stripe_event(event_type, "evt_table", **fields)), "applied")
    row = await stored(db, payment.id)
    assert row is not None and row.payment_status is end and row.version == 2
    assert await history(db, payment.id) == [(start, end, "stripe", "evt_table")]
    assert await recorded_events(db) == [("evt_table", event_type, "applied", payment.id, 1)]


async def test_checkout_completion_links_the_payment_intent_for_later_events(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, amount="99.99", payment_id=None, checkout_session_id="cs_test_a1b2c3")
    ack(await deliver(client, stripe_event("checkout.session.completed", "evt_1", payment_status="unpaid")), "applied")
    row = await stored(db, payment.id)
    assert row is not None and (row.payment_id, row.payment_status) == ("pi_3QcsPaymentIntent", S.PROCESSING)

    ack(await deliver(client, stripe_event("payment_intent.succeeded", "evt_2")), "applied")
    assert (await stored(db, payment.id)).payment_status is S.SUCCEEDED  # type: ignore[union-attr]
    assert [h[:2] for h in await history(db, payment.id)] == [(S.PENDING, S.PROCESSING), (S.PROCESSING, S.SUCCEEDED)]


async def test_linking_alone_is_applied_even_when_the_status_does_not_move(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await make_payment(
        db, user_id=1, amount="99.99", status=S.SUCCEEDED, payment_id=None, checkout_session_id="cs_test_a1b2c3"
    )
    ack(await deliver(client, stripe_event("checkout.session.completed", "evt_link")), "applied")
    assert (await stored(db, payment.id)).payment_id == "pi_3QcsPaymentIntent"  # type: ignore[union-attr]
    assert await history(db, payment.id) == []


async def test_a_redelivered_event_is_applied_once(client: httpx.AsyncClient, db: AsyncSession) -> None:
    payment = await make_payment(db, user_id=1, amount="99.99", payment_id="pi_3QcsPaymentIntent")
    event = stripe_event("payment_intent.succeeded", "evt_again")
    ack(await deliver(client, event), "applied")
    # Meanwhile someone refunds it; a redelivery must not touch it.
    await db.execute(update(Payment).values(payment_status=S.REFUNDED, amount_refunded=Payment.amount_total))
    for _ in range(2):
        ack(await deliver(client, event), "applied", duplicate=True)
    assert (await stored(db, payment.id)).payment_status is S.REFUNDED  # type: ignore[union-attr]
    assert len(await history(db, payment.id)) == 1
    assert await recorded_events(db) == [("evt_again", "payment_intent.succeeded", "applied", payment.id, 3)]


async def test_an_out_of_order_event_is_recorded_as_stale(client: httpx.AsyncClient, db: AsyncSession) -> None:
    payment = await make_payment(db, user_id=1, amount="99.99", payment_id="pi_3QcsPaymentIntent")
    ack(await deliver(client, stripe_event("payment_intent.succeeded", "evt_a")), "applied")
    ack(await deliver(client, stripe_event("payment_intent.processing", "evt_b")), "stale")
    assert (await stored(db, payment.id)).payment_status is S.SUCCEEDED  # type: ignore[union-attr]
    assert [row[2] for row in await recorded_events(db)] == ["applied", "stale"]


async def test_a_repeated_status_is_stale(client: httpx.AsyncClient, db: AsyncSession) -> None:
    payment = await make_payment(db, user_id=1, amount="99.99", status=S.SUCCEEDED, payment_id="pi_3QcsPaymentIntent")
    ack(await deliver(client, stripe_event("payment_intent.succeeded", "evt_same")), "stale")
    assert (await stored(db, payment.id)).version == 1  # type: ignore[union-attr]


async def test_unknown_payment_is_recorded_as_unmatched(client: httpx.AsyncClient, db: AsyncSession) -> None:
    ack(await deliver(client, stripe_event("payment_intent.succeeded", "evt_nobody", id="pi_unknown")), "unmatched")
    assert await recorded_events(db) == [("evt_nobody", "payment_intent.succeeded", "unmatched", None, 1)]


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [
        ("customer.created", {}),
        ("payment_intent.created", {}),
        ("checkout.session.completed", {"payment_status": "no_payment_required"}),
    ],
)
async def test_events_the_service_does_not_act_on_are_ignored(
    client: httpx.AsyncClient, db: AsyncSession, event_type: str, fields: dict[str, Any]
) -> None:
    payment = await make_payment(
        db,
        user_id=1,
        amount="99.99",
        status=S.SUCCEEDED,
        payment_id="pi_3QcsPaymentIntent",
        checkout_session_id="cs_test_a1b2c3",
    )
    if event_type == "customer.created":
        event = stripe_event("payment_intent.succeeded", "evt_ign")
        event["type"] = event_type
    else:
        event = stripe_event(event_type, "evt_ign", **fields)
    ack(await deliver(client, event), "ignored")
    assert (await stored(db, payment.id)).payment_status is S.SUCCEEDED  # type: ignore[union-attr]
    assert await recorded_events(db) == [("evt_ign", event_type, "ignored", None, 1)]


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"amount": 9998}, "amount 99.98 USD"),
        ({"currency": "eur"}, "currency EUR"),
        ({"currency": "xyz"}, "unknown currency"),
        # Someone recorded another guest's session or intent under their own account first.
        ({"metadata": {"user_id": "2"}}, "metadata user_id 2 differs from the payment's owner 1"),
        ({"metadata": {"booking_id": "bk_victim"}}, "metadata booking_id bk_victim differs"),
    ],
)
async def test_amount_or_currency_mismatch_is_an_anomaly_and_changes_nothing(
    client: httpx.AsyncClient,
    db: AsyncSession,
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, Any],
    detail: str,
) -> None:
    payment = await make_payment(db, user_id=1, amount="99.99", payment_id="pi_3QcsPaymentIntent", booking_id="bk_1")
    with caplog.at_level(logging.WARNING, logger="app.services.webhooks"):
        ack(await deliver(client, stripe_event("payment_intent.succeeded", "evt_odd", **fields)), "anomaly")
    row = await stored(db, payment.id)
    assert row is not None and (row.payment_status, row.version) == (S.PENDING, 1)
    event = (await db.scalars(select(WebhookEvent))).one()
    assert event.detail is not None and detail in event.detail
    assert [r.levelname for r in caplog.records if "evt_odd" in r.getMessage()] == ["WARNING"]


@pytest.mark.parametrize(
    ("currency", "amount", "minor"),
    [
        # ISO 4217 exponents
        ("JPY", "1500", 1500),
        ("KWD", "1.25", 1250),
        ("EUR", "10", 1000),
        # where Stripe uses its own: ISK and UGX with two decimals, MGA with none
        ("ISK", "1500", 150000),
        ("UGX", "5000", 500000),
        ("MGA", "1500", 1500),
    ],
)
async def test_minor_units_are_converted_with_the_currency_exponent(
    client: httpx.AsyncClient, db: AsyncSession, currency: str, amount: str, minor: int
) -> None:
    payment = await make_payment(db, user_id=1, amount=amount, currency=currency, payment_id="pi_3QcsPaymentIntent")
    event = stripe_event("payment_intent.succeeded", "evt_cur", amount=minor, currency=currency.lower())
    ack(await deliver(client, event), "applied")
    assert (await stored(db, payment.id)).payment_status is S.SUCCEEDED  # type: ignore[union-attr]


async def test_metadata_naming_the_payment_s_own_user_and_booking_is_applied(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, amount="99.99", payment_id="pi_3QcsPaymentIntent", booking_id="bk_9")
    metadata = {"user_id": "1", "booking_id": "bk_9", "channel": "web"}
    ack(await deliver(client, stripe_event("payment_intent.succeeded", "evt_own", metadata=metadata)), "applied")
    assert (await stored(db, payment.id)).payment_status is S.SUCCEEDED  # type: ignore[union-attr]


async def test_a_session_event_naming_another_payment_intent_is_an_anomaly(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await make_payment(
        db, user_id=1, amount="99.99", payment_id="pi_other", checkout_session_id="cs_test_a1b2c3"
    )
    ack(await deliver(client, stripe_event("checkout.session.completed", "evt_mismatch")), "anomaly")
    row = await stored(db, payment.id)
    assert row is not None and (row.payment_id, row.payment_status) == ("pi_other", S.PENDING)


async def test_an_event_signed_with_the_previous_secret_is_accepted(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await make_payment(db, user_id=1, amount="99.99", payment_id="pi_3QcsPaymentIntent")
    ack(await deliver(client, stripe_event("payment_intent.succeeded", "evt_old"), STRIPE_OLD_SECRET), "applied")


def _headers(signature: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return headers


PAYLOAD = encode(stripe_event("payment_intent.succeeded", "evt_bad"))
Signer = Callable[[], str | None]  # the Stripe-Signature header, computed when the request is sent


def signed(payload: bytes, secret: str = STRIPE_SECRET, age: int = 0) -> Signer:
    return lambda: sign(payload, secret, int(time.time()) - age)


# Signed when sent, not when this module is imported: a stale signature would otherwise give these
# cases their 400 from the timestamp check instead of the check each one names.
@pytest.mark.parametrize(
    ("payload", "signature"),
    [
        (PAYLOAD, lambda: None),
        (PAYLOAD, lambda: ""),
        (PAYLOAD, lambda: "garbage"),
        (PAYLOAD, signed(PAYLOAD, "whsec_someone_else")),
        (PAYLOAD.replace(b"9999", b"1"), signed(PAYLOAD)),  # tampered body
        (PAYLOAD, signed(PAYLOAD, age=301)),  # too old
        (PAYLOAD, signed(PAYLOAD, age=-3600)),  # from the future
        (PAYLOAD, lambda: sign(PAYLOAD, STRIPE_SECRET).replace("v1=", "v0=")),
        (b"\xff\xfe not utf-8", signed(b"\xff\xfe not utf-8")),
        (b'{"hello": "world"}', signed(b'{"hello": "world"}')),  # signed, but not an event
        (b"[]", signed(b"[]")),
        (b"not json", signed(b"not json")),
    ],
    ids=[
        "no header",
        "empty header",
        "garbage",
        "another secret",
        "tampered body",
        "too old",
        "from the future",
        "unknown scheme",
        "not utf-8",
        "not an event",
        "a list",
        "not json",
    ],
)
async def test_unverifiable_or_malformed_deliveries_are_400_and_change_nothing(
    client: httpx.AsyncClient, db: AsyncSession, payload: bytes, signature: Signer
) -> None:
    payment = await make_payment(db, user_id=1, amount="99.99", payment_id="pi_3QcsPaymentIntent")
    response = await client.post(URL, content=payload, headers=_headers(signature()))
    assert_problem(response, 400, "/invalid-webhook")
    assert (await stored(db, payment.id)).payment_status is S.PENDING  # type: ignore[union-attr]
    assert await recorded_events(db) == []


async def test_without_a_configured_secret_the_endpoint_is_503_so_stripe_retries(
    client: httpx.AsyncClient, app: Any
) -> None:
    configured = app.state.settings
    app.state.settings = configured.model_copy(update={"stripe_webhook_secret": None})
    try:
        response = await client.post(URL, content=PAYLOAD, headers=_headers(sign(PAYLOAD, STRIPE_SECRET)))
    finally:
        app.state.settings = configured
    assert_problem(response, 503, "/webhooks-not-configured")
    assert response.headers["retry-after"] == "60"


async def test_admins_list_events_newest_first_filtered_by_outcome(
    client: httpx.AsyncClient, db: AsyncSession, auth: TokenFactory
) -> None:
    payment = await make_payment(db, user_id=1, amount="99.99", payment_id="pi_3QcsPaymentIntent")
    ack(await deliver(client, stripe_event("payment_intent.succeeded", "evt_l1")), "applied")
    ack(await deliver(client, stripe_event("payment_intent.succeeded", "evt_l2", id="pi_x")), "unmatched")
    ack(await deliver(client, stripe_event("payment_intent.processing", "evt_l3")), "stale")

    response = await client.get(EVENTS, headers=auth(1, admin=True))
    assert response.status_code == 200
    body = response.json()
    assert [e["event_id"] for e in body["items"]] == ["evt_l3", "evt_l2", "evt_l1"]
    assert (body["total"], body["page"], body["size"], body["pages"]) == (3, 1, 20, 1)
    assert body["items"][2]["payment_id"] == payment.id

    unmatched = (await client.get(EVENTS, params={"outcome": "unmatched"}, headers=auth(1, admin=True))).json()
    assert [e["event_id"] for e in unmatched["items"]] == ["evt_l2"]
    paged = (await client.get(EVENTS, params={"size": 2, "page": 2}, headers=auth(1, admin=True))).json()
    assert ([e["event_id"] for e in paged["items"]], paged["pages"]) == (["evt_l1"], 2)

    assert_problem(await client.get(EVENTS, headers=auth(1)), 403)
    assert_problem(await client.get(EVENTS, params={"outcome": "weird"}, headers=auth(1, admin=True)), 422)
