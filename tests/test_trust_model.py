"""Who may say a payment is paid: end users create pending payments and cancel their own pending
ones; recording what a gateway did takes a trusted backend (service role), an admin, or a verified
webhook (tests/test_webhooks.py)."""

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.main import create_app
from app.models import Payment, PaymentStatusHistory
from app.models import PaymentStatus as S
from tests.conftest import TEST_SECRET, TokenFactory, attach_test_connection, make_payment
from tests.helpers import assert_problem, stored

PAYMENTS = "/api/v1/payments/"
OUTCOMES = [S.PROCESSING, S.SUCCEEDED, S.FAILED, S.REFUNDED]


def new_payment(**overrides: Any) -> dict[str, Any]:
    return {"checkout_session_id": "cs_trust", "provider": "stripe", "currency": "USD", "amount_total": "300.00"} | (
        overrides
    )


async def actors(db: AsyncSession, payment_id: int) -> list[tuple[S | None, S, str]]:
    statement = (
        select(PaymentStatusHistory)
        .where(PaymentStatusHistory.payment_id == payment_id)
        .order_by(PaymentStatusHistory.id)
    )
    return [(row.from_status, row.to_status, row.actor) for row in await db.scalars(statement)]


@pytest.mark.parametrize("status", [s for s in S if s not in (S.PENDING, S.REFUNDED)])  # refunded: a 422 for anyone
async def test_a_user_cannot_create_a_payment_that_is_not_pending(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, status: S
) -> None:
    response = await client.post(PAYMENTS, json=new_payment(payment_status=status.value), headers=auth(1))
    problem = assert_problem(response, 403, "/forbidden")
    assert status.value in problem["detail"] and "service role" in problem["detail"]
    assert (await db.scalars(select(Payment).where(Payment.checkout_session_id == "cs_trust"))).all() == []


@pytest.mark.parametrize("target", OUTCOMES)
@pytest.mark.parametrize("current", [S.PENDING, S.PROCESSING, S.FAILED, S.SUCCEEDED])
async def test_a_user_cannot_record_a_gateway_outcome_on_their_own_payment(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, current: S, target: S
) -> None:
    payment = await make_payment(db, user_id=1, status=current)
    response = await client.patch(
        f"{PAYMENTS}{payment.id}/status", json={"payment_status": target.value}, headers=auth(1)
    )
    assert_problem(response, 403, "/forbidden")
    row = await stored(db, payment.id)
    assert row is not None and (row.payment_status, row.version) == (current, payment.version)
    assert await actors(db, payment.id) == []


@pytest.mark.parametrize("current", [S.PROCESSING, S.FAILED])
async def test_a_user_may_cancel_only_a_pending_payment(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, current: S
) -> None:
    under_way = await make_payment(db, user_id=1, status=current)
    assert_problem(await client.delete(f"{PAYMENTS}{under_way.id}", headers=auth(1)), 403, "/forbidden")
    assert (await stored(db, under_way.id)).payment_status is current  # type: ignore[union-attr]

    pending = await make_payment(db, user_id=1)
    canceled = await client.delete(f"{PAYMENTS}{pending.id}", headers=auth(1))
    assert (canceled.status_code, canceled.json()["payment_status"]) == (200, "canceled")
    assert await actors(db, pending.id) == [(S.PENDING, S.CANCELED, "user:1")]


async def test_another_users_payment_stays_a_404_whatever_the_target(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1)
    response = await client.patch(
        f"{PAYMENTS}{payment.id}/status", json={"payment_status": "canceled"}, headers=auth(2)
    )
    assert_problem(response, 404, "/payment-not-found")


@pytest.mark.parametrize("field", ["booking_id", "property_id"])
async def test_a_user_cannot_move_a_payment_under_way_to_another_booking(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, field: str
) -> None:
    paid = await make_payment(db, user_id=1, status=S.SUCCEEDED, booking_id="bk_1", property_id="pr_1")
    response = await client.put(f"{PAYMENTS}{paid.id}", json={field: "other"}, headers=auth(1))
    problem = assert_problem(response, 403, "/forbidden")
    assert field in problem["detail"]
    row = await stored(db, paid.id)
    assert row is not None and (row.booking_id, row.property_id, row.version) == ("bk_1", "pr_1", paid.version)

    pending = await make_payment(db, user_id=1, booking_id="bk_1", property_id="pr_1")
    response = await client.put(f"{PAYMENTS}{pending.id}", json={field: "other"}, headers=auth(1))
    assert (response.status_code, response.json()[field]) == (200, "other")

    by_backend = await client.put(f"{PAYMENTS}{paid.id}", json={field: "other"}, headers=auth(7, service=True))
    assert (by_backend.status_code, by_backend.json()[field]) == (200, "other")


async def test_a_service_records_outcomes_on_any_payment_and_the_history_names_it(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1)
    url = f"{PAYMENTS}{payment.id}"
    service = auth(7, service=True)
    assert (await client.get(url, headers=service)).json()["user_id"] == 1
    for target in ("processing", "succeeded"):
        response = await client.patch(f"{url}/status", json={"payment_status": target}, headers=service)
        assert (response.status_code, response.json()["payment_status"]) == (200, target)
    refunded = await client.patch(f"{url}/status", json={"payment_status": "refunded"}, headers=auth(9, admin=True))
    assert refunded.status_code == 200
    assert await actors(db, payment.id) == [
        (S.PENDING, S.PROCESSING, "service:7"),
        (S.PROCESSING, S.SUCCEEDED, "service:7"),
        (S.SUCCEEDED, S.REFUNDED, "admin:9"),
    ]
    created = await client.post(PAYMENTS, json=new_payment(payment_status="succeeded"), headers=service)
    assert (created.status_code, created.json()["payment_status"]) == (201, "succeeded")
    assert await actors(db, created.json()["id"]) == [(None, S.SUCCEEDED, "service:7")]


async def test_a_service_cannot_use_the_admin_lists(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    assert_problem(await client.get(f"{PAYMENTS}admin/all", headers=auth(7, service=True)), 403, "/forbidden")
    assert_problem(await client.get("/api/v1/webhooks/events", headers=auth(7, service=True)), 403, "/forbidden")
    assert (await client.get(f"{PAYMENTS}admin/all", headers=auth(9, admin=True))).status_code == 200


async def test_the_booking_service_sees_every_payment_of_a_booking(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await make_payment(db, user_id=1, booking_id="bk_shared")
    await make_payment(db, user_id=2, booking_id="bk_shared")
    mine = await client.get(f"{PAYMENTS}booking/bk_shared", headers=auth(1))
    every = await client.get(f"{PAYMENTS}booking/bk_shared", headers=auth(7, service=True))
    assert [p["user_id"] for p in mine.json()["items"]] == [1]
    assert sorted(p["user_id"] for p in every.json()["items"]) == [1, 2]


@pytest.fixture
async def trusting_client(driver_connection: Any, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    trusting = settings.model_copy(update={"trust_user_tokens": True})
    app = create_app(trusting)
    attach_test_connection(app, driver_connection, trusting)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


async def test_trust_user_tokens_gives_back_the_old_behaviour_for_own_payments_only(
    trusting_client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1)
    response = await trusting_client.patch(
        f"{PAYMENTS}{payment.id}/status", json={"payment_status": "succeeded"}, headers=auth(1)
    )
    assert (response.status_code, response.json()["payment_status"]) == (200, "succeeded")
    assert await actors(db, payment.id) == [(S.PENDING, S.SUCCEEDED, "user:1")]
    others = await trusting_client.patch(
        f"{PAYMENTS}{payment.id}/status", json={"payment_status": "refunded"}, headers=auth(2)
    )
    assert_problem(others, 404, "/payment-not-found")


def test_make_token_mints_a_service_token() -> None:
    minted = subprocess.run(
        [sys.executable, "-m", "scripts.mint_token", "7", "--service"],
        env={"SECRET_KEY": TEST_SECRET, "ENVIRONMENT": "development", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    claims = jwt.decode(minted.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    assert (claims["user_id"], claims["roles"]) == (7, ["service"])
