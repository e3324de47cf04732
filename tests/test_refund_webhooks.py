"""Stripe's refund events (refund.created / .updated / .failed, charge.refund.updated, charge.refunded)
through the webhook endpoint: each matched by its refund id, linked to a refund recorded before its id
was known, or recorded as the Stripe dashboard's, and the payment's sums, status and history agree
with its refunds afterwards."""

import copy
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, Refund, RefundReason, WebhookEvent
from app.models import PaymentStatus as S
from app.models import RefundStatus as R
from tests.conftest import TokenFactory, make_payment
from tests.helpers import assert_refund_invariant as assert_invariant
from tests.helpers import history, recorded_events
from tests.helpers import refund_rows as refunds
from tests.helpers import refund_sums as sums
from tests.stripe_events import FIXTURES, ack, deliver, stripe_event

PI = "pi_3QcsPaymentIntent"  # the payment intent of every fixture
SERVICE = 50  # a backend with the service role; the payments belong to user 1


async def detail(db: AsyncSession, event_id: str) -> str:
    statement = select(WebhookEvent.detail).where(WebhookEvent.event_id == event_id)
    value = (await db.execute(statement)).scalar_one()
    assert isinstance(value, str)
    return value


async def only_refund(db: AsyncSession, payment_id: int) -> Refund:
    statement = select(Refund).where(Refund.payment_id == payment_id).execution_options(populate_existing=True)
    return (await db.scalars(statement)).one()


async def paid(db: AsyncSession, amount: str = "99.99", currency: str = "USD", status: S = S.SUCCEEDED) -> Payment:
    return await make_payment(db, user_id=1, status=status, amount=amount, currency=currency, payment_id=PI)


def refund_event(
    event_type: str, event_id: str, refund_id: str, amount: int, status: str, **fields: Any
) -> dict[str, Any]:
    """A refund.* / charge.refund.updated event whose object is this Stripe Refund."""
    return stripe_event(event_type, event_id, id=refund_id, amount=amount, status=status, **fields)


def refund_object(refund_id: str, amount: int, status: str, **fields: Any) -> dict[str, Any]:
    """A Stripe Refund object, as a charge's `refunds` list carries it."""
    template = json.loads((FIXTURES / "refund.created.json").read_text())
    refund: dict[str, Any] = copy.deepcopy(template["data"]["object"])
    refund.update(id=refund_id, amount=amount, status=status, **fields)
    return refund


def refund_list(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": list(items),
        "has_more": False,
        "total_count": len(items),
        "url": "/v1/charges/ch_3QcsCharge/refunds",
    }


def charge_refunded(event_id: str, amount_refunded: int, **fields: Any) -> dict[str, Any]:
    return stripe_event(
        "charge.refunded", event_id, amount_refunded=amount_refunded, refunded=amount_refunded == 9999, **fields
    )


# --- the fixtures themselves ----------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["refund.created", "refund.updated", "refund.failed", "charge.refund.updated"])
def test_refund_events_are_built_on_the_refund_fixture(event_type: str) -> None:
    event = stripe_event(event_type, "evt_shape", amount=1)
    assert (event["id"], event["type"], event["object"]) == ("evt_shape", event_type, "event")
    obj = event["data"]["object"]
    assert (obj["object"], obj["id"], obj["payment_intent"], obj["charge"]) == (
        "refund",
        "re_3QcsRefund",
        PI,
        "ch_3QcsCharge",
    )
    assert (obj["amount"], obj["currency"], obj["status"]) == (1, "usd", "succeeded")
    # the other kinds keep their own templates
    assert stripe_event("charge.refunded", "evt_c")["data"]["object"]["object"] == "charge"
    assert stripe_event("payment_intent.succeeded", "evt_p")["data"]["object"]["object"] == "payment_intent"


# --- 1. a refund made in the Stripe dashboard -----------------------------------------------------


@pytest.mark.parametrize("update_type", ["refund.updated", "charge.refund.updated"])
async def test_a_dashboard_refund_is_recorded_pending_then_succeeds(
    client: httpx.AsyncClient, db: AsyncSession, update_type: str
) -> None:
    payment = await paid(db)
    created = refund_event("refund.created", "evt_r1", "re_dash", 2500, "pending", metadata={"ticket": "T-7"})
    ack(await deliver(client, created), "applied")
    assert await refunds(db, payment.id) == [(Decimal("25.00"), R.PENDING, "re_dash", "stripe")]
    refund = await only_refund(db, payment.id)
    assert (refund.currency, refund.reason, refund.metadata_, refund.failure_reason) == (
        "USD",
        RefundReason.REQUESTED_BY_CUSTOMER,
        {"ticket": "T-7"},
        None,
    )
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal("25.00"), 2)
    assert await detail(db, "evt_r1") == "refund re_dash recorded as pending"

    ack(await deliver(client, refund_event(update_type, "evt_r2", "re_dash", 2500, "succeeded")), "applied")
    assert await refunds(db, payment.id) == [(Decimal("25.00"), R.SUCCEEDED, "re_dash", "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal("25.00"), Decimal(0), 3)  # partial: still succeeded
    assert await detail(db, "evt_r2") == "refund re_dash: pending -> succeeded"
    assert await history(db, payment.id) == []
    assert await recorded_events(db) == [
        ("evt_r1", "refund.created", "applied", payment.id, 1),
        ("evt_r2", update_type, "applied", payment.id, 1),
    ]
    await assert_invariant(db)


async def test_requires_action_is_recorded_as_pending(client: httpx.AsyncClient, db: AsyncSession) -> None:
    payment = await paid(db)
    ack(await deliver(client, refund_event("refund.created", "evt_ra", "re_ra", 1000, "requires_action")), "applied")
    assert await refunds(db, payment.id) == [(Decimal("10.00"), R.PENDING, "re_ra", "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal("10.00"), 2)


# --- 2. charge.refunded without a refund list, linked later ---------------------------------------


async def test_a_full_charge_refunded_reserves_the_amount_and_the_refund_event_settles_it(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    """The charge's amount_refunded counts refunds still pending (which may fail): the refund is
    recorded pending, and the payment is refunded once the refund's own event says it succeeded."""
    payment = await paid(db)
    ack(await deliver(client, stripe_event("charge.refunded", "evt_3QchRefunded")), "applied")
    assert await refunds(db, payment.id) == [(Decimal("99.99"), R.PENDING, None, "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal("99.99"), 2)
    assert await history(db, payment.id) == []
    recorded = await detail(db, "evt_3QchRefunded")
    assert recorded == "recorded a pending refund of 99.99 (the charge's refunded 99.99)"

    ack(await deliver(client, refund_event("refund.created", "evt_link", "re_x", 9999, "succeeded")), "applied")
    assert await refunds(db, payment.id) == [(Decimal("99.99"), R.SUCCEEDED, "re_x", "stripe")]
    assert (await only_refund(db, payment.id)).version == 3  # linked (its id set), then settled
    assert await sums(db, payment.id) == (S.REFUNDED, Decimal("99.99"), Decimal(0), 4)
    assert await history(db, payment.id) == [(S.SUCCEEDED, S.REFUNDED, "stripe", "evt_link")]
    assert await recorded_events(db) == [
        ("evt_3QchRefunded", "charge.refunded", "applied", payment.id, 1),
        ("evt_link", "refund.created", "applied", payment.id, 1),
    ]
    await assert_invariant(db)


# --- 3. a partial charge.refunded, then the same total again --------------------------------------


async def test_a_partial_charge_refunded_records_the_difference_once(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await paid(db)
    ack(await deliver(client, charge_refunded("evt_c1", 5000)), "applied")
    assert await refunds(db, payment.id) == [(Decimal("50.00"), R.PENDING, None, "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal("50.00"), 2)

    ack(await deliver(client, charge_refunded("evt_c2", 5000)), "stale")  # another event, the same total
    assert await refunds(db, payment.id) == [(Decimal("50.00"), R.PENDING, None, "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal("50.00"), 2)
    assert await detail(db, "evt_c2") == "the charge's refunded 50.00 is already recorded"
    assert await history(db, payment.id) == []
    assert [row[2] for row in await recorded_events(db)] == ["applied", "stale"]

    # A second partial refund: only the new difference is recorded.
    ack(await deliver(client, charge_refunded("evt_c3", 7500)), "applied")
    assert await refunds(db, payment.id) == [
        (Decimal("50.00"), R.PENDING, None, "stripe"),
        (Decimal("25.00"), R.PENDING, None, "stripe"),
    ]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal("75.00"), 3)
    await assert_invariant(db)


async def test_charge_refunded_after_the_refund_s_pending_event_records_nothing_new(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    """In order: refund.created (pending) reserves the amount; the charge's amount_refunded, which
    counts that refund, is already recorded."""
    payment = await paid(db)
    ack(await deliver(client, refund_event("refund.created", "evt_p", "re_p", 3000, "pending")), "applied")
    ack(await deliver(client, charge_refunded("evt_c", 3000)), "stale")
    assert await refunds(db, payment.id) == [(Decimal("30.00"), R.PENDING, "re_p", "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal("30.00"), 2)
    assert await detail(db, "evt_c") == "the charge's refunded 30.00 is already recorded"
    ack(await deliver(client, refund_event("refund.updated", "evt_s", "re_p", 3000, "succeeded")), "applied")
    assert await refunds(db, payment.id) == [(Decimal("30.00"), R.SUCCEEDED, "re_p", "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal("30.00"), Decimal(0), 3)
    await assert_invariant(db)


# --- 4. charge.refunded with its refund list ------------------------------------------------------


async def test_a_charge_refunded_with_its_refund_list_records_each_refund(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await paid(db)
    listed = refund_list(refund_object("re_a", 3000, "succeeded"), refund_object("re_b", 2000, "pending"))
    ack(await deliver(client, charge_refunded("evt_list", 5000, refunds=listed)), "applied")
    assert await refunds(db, payment.id) == [
        (Decimal("30.00"), R.SUCCEEDED, "re_a", "stripe"),
        (Decimal("20.00"), R.PENDING, "re_b", "stripe"),
    ]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal("30.00"), Decimal("20.00"), 3)
    assert await detail(db, "evt_list") == "refund re_a recorded as succeeded; refund re_b recorded as pending"
    assert await history(db, payment.id) == []

    # Their own events come after: the succeeded one is stale, the pending one settles.
    ack(await deliver(client, refund_event("refund.created", "evt_a", "re_a", 3000, "succeeded")), "stale")
    ack(await deliver(client, refund_event("refund.updated", "evt_b", "re_b", 2000, "succeeded")), "applied")
    assert [row[1:3] for row in await refunds(db, payment.id)] == [(R.SUCCEEDED, "re_a"), (R.SUCCEEDED, "re_b")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal("50.00"), Decimal(0), 4)
    await assert_invariant(db)


async def test_a_charge_refunded_listing_the_rest_refunds_the_payment(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await paid(db)
    ack(await deliver(client, refund_event("refund.created", "evt_1", "re_1", 4000, "succeeded")), "applied")
    listed = refund_list(refund_object("re_2", 5999, "succeeded"), refund_object("re_1", 4000, "succeeded"))
    ack(await deliver(client, charge_refunded("evt_all", 9999, refunds=listed)), "applied")
    assert await refunds(db, payment.id) == [
        (Decimal("40.00"), R.SUCCEEDED, "re_1", "stripe"),
        (Decimal("59.99"), R.SUCCEEDED, "re_2", "stripe"),
    ]
    assert await sums(db, payment.id) == (S.REFUNDED, Decimal("99.99"), Decimal(0), 4)
    assert await history(db, payment.id) == [(S.SUCCEEDED, S.REFUNDED, "stripe", "evt_all")]
    await assert_invariant(db)


# --- 5. late and contradicting statuses -----------------------------------------------------------


async def test_pending_after_succeeded_is_stale_and_failed_after_succeeded_an_anomaly(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await paid(db)
    ack(await deliver(client, refund_event("refund.created", "evt_s", "re_s", 2000, "succeeded")), "applied")
    before = [(Decimal("20.00"), R.SUCCEEDED, "re_s", "stripe")]
    assert await refunds(db, payment.id) == before
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal("20.00"), Decimal(0), 2)

    ack(await deliver(client, refund_event("refund.updated", "evt_late", "re_s", 2000, "pending")), "stale")
    assert await refunds(db, payment.id) == before
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal("20.00"), Decimal(0), 2)
    assert await detail(db, "evt_late") == "refund re_s: pending after succeeded not applied"

    failed = refund_event("refund.failed", "evt_f", "re_s", 2000, "failed", failure_reason="lost_or_stolen_card")
    ack(await deliver(client, failed), "anomaly")
    assert await refunds(db, payment.id) == before
    assert (await only_refund(db, payment.id)).failure_reason is None
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal("20.00"), Decimal(0), 2)
    assert await detail(db, "evt_f") == "refund re_s: Stripe reports failed after succeeded"
    assert await history(db, payment.id) == []
    assert await recorded_events(db) == [
        ("evt_s", "refund.created", "applied", payment.id, 1),
        ("evt_late", "refund.updated", "stale", payment.id, 1),
        ("evt_f", "refund.failed", "anomaly", payment.id, 1),
    ]
    await assert_invariant(db)


# --- 6. a known refund reported with another amount or currency -----------------------------------


def _updated(amount: int = 2000, **fields: Any) -> dict[str, Any]:
    return refund_event("refund.updated", "evt_odd", "re_k", amount, "succeeded", **fields)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (_updated(amount=2500), "refund re_k: amount 25.00 differs from"),
        (_updated(currency="eur"), "currency 'eur' differs from the payment's"),
        # the charge is in the payment's currency, the refund it lists is not
        (
            charge_refunded(
                "evt_odd", 2000, refunds=refund_list(refund_object("re_k", 2000, "succeeded", currency="eur"))
            ),
            "refund re_k: currency differs from the payment's",
        ),
    ],
    ids=["amount", "currency", "listed refund's currency"],
)
async def test_a_known_refund_with_another_amount_or_currency_is_an_anomaly(
    client: httpx.AsyncClient, db: AsyncSession, event: dict[str, Any], expected: str
) -> None:
    payment = await paid(db)
    ack(await deliver(client, refund_event("refund.created", "evt_k", "re_k", 2000, "pending")), "applied")
    ack(await deliver(client, event), "anomaly")
    assert await refunds(db, payment.id) == [(Decimal("20.00"), R.PENDING, "re_k", "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal("20.00"), 2)
    assert expected in await detail(db, "evt_odd")
    assert await recorded_events(db) == [
        ("evt_k", "refund.created", "applied", payment.id, 1),
        ("evt_odd", event["type"], "anomaly", payment.id, 1),
    ]
    await assert_invariant(db)


async def test_a_refund_id_of_another_payment_is_an_anomaly(client: httpx.AsyncClient, db: AsyncSession) -> None:
    first = await paid(db)
    other = await make_payment(db, user_id=1, status=S.SUCCEEDED, amount="99.99", payment_id="pi_other")
    ack(await deliver(client, refund_event("refund.created", "evt_1", "re_shared", 1000, "pending")), "applied")
    event = refund_event("refund.updated", "evt_2", "re_shared", 1000, "succeeded", payment_intent="pi_other")
    ack(await deliver(client, event), "anomaly")
    assert await detail(db, "evt_2") == f"refund re_shared belongs to payment {first.id}"
    assert await refunds(db, first.id) == [(Decimal("10.00"), R.PENDING, "re_shared", "stripe")]
    assert await refunds(db, other.id) == []
    assert await sums(db, other.id) == (S.SUCCEEDED, Decimal(0), Decimal(0), 1)


# --- 7. recorded through the API first, linked by the event ---------------------------------------


async def test_a_refund_recorded_through_the_api_is_linked_and_settled(
    client: httpx.AsyncClient, db: AsyncSession, auth: TokenFactory
) -> None:
    payment = await paid(db)
    response = await client.post(
        f"/api/v1/payments/{payment.id}/refunds", json={"amount": "40.00"}, headers=auth(SERVICE, service=True)
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["amount"], created["status"], created["refund_id"]) == ("40.00", "pending", None)
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal("40.00"), 2)

    ack(await deliver(client, refund_event("refund.updated", "evt_y", "re_y", 4000, "succeeded")), "applied")
    assert await refunds(db, payment.id) == [(Decimal("40.00"), R.SUCCEEDED, "re_y", f"service:{SERVICE}")]
    refund = await only_refund(db, payment.id)
    assert (refund.id, refund.version) == (created["id"], 3)  # the same row: linked, then settled
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal("40.00"), Decimal(0), 3)
    assert await detail(db, "evt_y") == "refund re_y: pending -> succeeded"
    assert await history(db, payment.id) == []
    assert await recorded_events(db) == [("evt_y", "refund.updated", "applied", payment.id, 1)]

    response = await client.get(f"/api/v1/payments/{payment.id}/refunds/{created['id']}", headers=auth(1))
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["refund_id"]) == ("succeeded", "re_y")
    await assert_invariant(db)


async def test_the_oldest_unlinked_refund_of_the_amount_is_linked(
    client: httpx.AsyncClient, db: AsyncSession, auth: TokenFactory
) -> None:
    payment = await paid(db)
    ids = []
    for amount in ("10.00", "40.00", "40.00"):
        response = await client.post(
            f"/api/v1/payments/{payment.id}/refunds", json={"amount": amount}, headers=auth(SERVICE, service=True)
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    ack(await deliver(client, refund_event("refund.created", "evt_o", "re_o", 4000, "pending")), "applied")
    statement = select(Refund.id, Refund.refund_id).order_by(Refund.id).execution_options(populate_existing=True)
    assert [tuple(row) for row in await db.execute(statement)] == [(ids[0], None), (ids[1], "re_o"), (ids[2], None)]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal("90.00"), 4)  # linking moves no money


# --- 8. refused refunds ---------------------------------------------------------------------------


async def test_a_refund_beyond_what_is_refundable_is_an_anomaly_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await paid(db)
    ack(await deliver(client, refund_event("refund.created", "evt_1", "re_1", 6000, "succeeded")), "applied")
    ack(await deliver(client, refund_event("refund.created", "evt_2", "re_2", 4000, "succeeded")), "anomaly")
    assert await refunds(db, payment.id) == [(Decimal("60.00"), R.SUCCEEDED, "re_1", "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal("60.00"), Decimal(0), 2)
    assert "exceeds what is still refundable (39.99 USD)" in await detail(db, "evt_2")
    assert await recorded_events(db) == [
        ("evt_1", "refund.created", "applied", payment.id, 1),
        ("evt_2", "refund.created", "anomaly", payment.id, 1),
    ]
    await assert_invariant(db)


@pytest.mark.parametrize(
    "event",
    [refund_event("refund.created", "evt_p", "re_p", 1000, "succeeded"), charge_refunded("evt_p", 1000)],
    ids=["refund.created", "charge.refunded"],
)
async def test_a_refund_of_a_payment_that_has_not_succeeded_is_an_anomaly(
    client: httpx.AsyncClient, db: AsyncSession, event: dict[str, Any]
) -> None:
    payment = await paid(db, status=S.PENDING)
    ack(await deliver(client, event), "anomaly")
    assert await refunds(db) == []
    assert await sums(db, payment.id) == (S.PENDING, Decimal(0), Decimal(0), 1)
    assert "Only a succeeded payment can be refunded; this one is pending" in await detail(db, "evt_p")
    assert await history(db, payment.id) == []
    assert await recorded_events(db) == [("evt_p", event["type"], "anomaly", payment.id, 1)]


async def test_a_charge_of_another_amount_is_an_anomaly(client: httpx.AsyncClient, db: AsyncSession) -> None:
    payment = await paid(db)
    ack(await deliver(client, charge_refunded("evt_ch", 5000, amount=12000)), "anomaly")
    assert await refunds(db) == []
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal(0), 1)
    assert await detail(db, "evt_ch") == "charge amount 120.00 differs from the payment's"


# --- 9. a failed refund releases its reservation --------------------------------------------------


async def test_refund_failed_releases_the_pending_amount(client: httpx.AsyncClient, db: AsyncSession) -> None:
    payment = await paid(db)
    ack(await deliver(client, refund_event("refund.created", "evt_1", "re_f", 3000, "pending")), "applied")
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal("30.00"), 2)

    failed = refund_event("refund.failed", "evt_2", "re_f", 3000, "failed", failure_reason="expired_or_canceled_card")
    ack(await deliver(client, failed), "applied")
    assert await refunds(db, payment.id) == [(Decimal("30.00"), R.FAILED, "re_f", "stripe")]
    assert (await only_refund(db, payment.id)).failure_reason == "expired_or_canceled_card"
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal(0), 3)
    assert await detail(db, "evt_2") == "refund re_f: pending -> failed"
    assert await history(db, payment.id) == []

    # The whole amount is refundable again.
    ack(await deliver(client, refund_event("refund.created", "evt_3", "re_all", 9999, "succeeded")), "applied")
    assert await sums(db, payment.id) == (S.REFUNDED, Decimal("99.99"), Decimal(0), 5)
    await assert_invariant(db)


async def test_an_unknown_refund_reported_canceled_is_recorded_canceled(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await paid(db)
    ack(await deliver(client, refund_event("refund.updated", "evt_c", "re_c", 1500, "canceled")), "applied")
    assert await refunds(db, payment.id) == [(Decimal("15.00"), R.CANCELED, "re_c", "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal(0), 3)
    await assert_invariant(db)


# --- 10. redeliveries -----------------------------------------------------------------------------


async def test_a_redelivered_refund_event_is_applied_once(client: httpx.AsyncClient, db: AsyncSession) -> None:
    payment = await paid(db)
    event = refund_event("refund.created", "evt_again", "re_again", 2000, "succeeded")
    ack(await deliver(client, event), "applied")
    for _ in range(2):
        ack(await deliver(client, event), "applied", duplicate=True)
    assert await refunds(db, payment.id) == [(Decimal("20.00"), R.SUCCEEDED, "re_again", "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal("20.00"), Decimal(0), 2)
    assert await recorded_events(db) == [("evt_again", "refund.created", "applied", payment.id, 3)]

    # The same refund in another event (Stripe sends refund.created and charge.refund.updated): stale.
    again = refund_event("charge.refund.updated", "evt_other", "re_again", 2000, "succeeded")
    ack(await deliver(client, again), "stale")
    assert await refunds(db, payment.id) == [(Decimal("20.00"), R.SUCCEEDED, "re_again", "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal("20.00"), Decimal(0), 2)


# --- 11. currencies with other exponents ----------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "total", "minor", "amount", "shown"),
    [
        ("JPY", "1500", 500, Decimal("500"), "500"),
        ("KWD", "1.250", 250, Decimal("0.250"), "0.250"),
        ("ISK", "1500", 50000, Decimal("500"), "500"),  # Stripe sends ISK with two decimals
    ],
)
async def test_refund_amounts_use_the_currency_exponent(
    client: httpx.AsyncClient,
    db: AsyncSession,
    auth: TokenFactory,
    currency: str,
    total: str,
    minor: int,
    amount: Decimal,
    shown: str,
) -> None:
    payment = await paid(db, amount=total, currency=currency)
    event = refund_event("refund.created", "evt_cur", "re_cur", minor, "succeeded", currency=currency.lower())
    ack(await deliver(client, event), "applied")
    assert await refunds(db, payment.id) == [(amount, R.SUCCEEDED, "re_cur", "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, amount, Decimal(0), 2)
    response = await client.get(f"/api/v1/payments/{payment.id}/refunds", headers=auth(1))
    assert response.status_code == 200, response.text
    assert [(r["amount"], r["currency"]) for r in response.json()["items"]] == [(shown, currency)]


# --- 12. no payment -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payment_intent", "expected"),
    [("pi_unknown", "no payment with this payment intent"), (None, "the event names no payment intent")],
)
async def test_a_refund_of_an_unknown_payment_intent_is_unmatched(
    client: httpx.AsyncClient, db: AsyncSession, payment_intent: str | None, expected: str
) -> None:
    payment = await paid(db)
    event = refund_event("refund.created", "evt_nobody", "re_n", 1000, "succeeded", payment_intent=payment_intent)
    ack(await deliver(client, event), "unmatched")
    assert await refunds(db) == []
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal(0), 1)
    assert await recorded_events(db) == [("evt_nobody", "refund.created", "unmatched", None, 1)]
    assert await detail(db, "evt_nobody") == expected


# --- events out of order --------------------------------------------------------------------------
# Stripe does not order its deliveries: charge.refunded (its amount_refunded already counting a refund
# still pending) may come before that refund's own events. charge.refunded then records the refund
# without an id, pending; the refund's events must find that row, not record the refund again.


@pytest.mark.parametrize(
    ("minor", "amount", "status"),
    [(3000, Decimal("30.00"), S.SUCCEEDED), (9999, Decimal("99.99"), S.REFUNDED)],
    ids=["partial", "full"],
)
async def test_charge_refunded_before_the_pending_refund_event_counts_the_refund_once(
    client: httpx.AsyncClient, db: AsyncSession, minor: int, amount: Decimal, status: S
) -> None:
    payment = await paid(db)
    ack(await deliver(client, charge_refunded("evt_charge", minor)), "applied")
    # linked to the pending refund charge.refunded recorded, then settled by its own event
    ack(await deliver(client, refund_event("refund.created", "evt_created", "re_x", minor, "pending")), "applied")
    assert await refunds(db, payment.id) == [(amount, R.PENDING, "re_x", "stripe")]
    ack(await deliver(client, refund_event("refund.updated", "evt_updated", "re_x", minor, "succeeded")), "applied")
    assert await refunds(db, payment.id) == [(amount, R.SUCCEEDED, "re_x", "stripe")]
    assert (await sums(db, payment.id))[:3] == (status, amount, Decimal(0))
    await assert_invariant(db)


async def test_a_refund_failing_after_charge_refunded_counted_it_releases_it_and_records_no_second_refund(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payment = await paid(db)
    ack(await deliver(client, charge_refunded("evt_charge", 3000)), "applied")
    failed = refund_event("refund.failed", "evt_failed", "re_x", 3000, "failed", failure_reason="unknown")
    ack(await deliver(client, failed), "applied")
    # one refund, linked and failed: its reservation released, no second refund of the same money
    assert await refunds(db, payment.id) == [(Decimal("30.00"), R.FAILED, "re_x", "stripe")]
    assert await sums(db, payment.id) == (S.SUCCEEDED, Decimal(0), Decimal(0), 3)
    await assert_invariant(db)
