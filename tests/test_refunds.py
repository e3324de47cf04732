"""Refunds through the API: recorded to the cent, never more than was paid, and the payment's sums,
status and history agree with its refunds after every request."""

from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.metrics import REGISTRY
from app.models import Payment, PaymentStatus, RefundStatus
from tests.conftest import TokenFactory, make_payment
from tests.helpers import assert_problem, error_locations, refund_rows
from tests.helpers import assert_refund_invariant as assert_invariant
from tests.helpers import refund_sums as sums

SERVICE = 50  # the backend that records refunds (service role); the payments belong to user 1


def refunds_url(payment_id: int, refund_id: int | None = None) -> str:
    base = f"/api/v1/payments/{payment_id}/refunds"
    return base if refund_id is None else f"{base}/{refund_id}"


async def history(db: AsyncSession, payment_id: int) -> list[tuple[Any, ...]]:
    rows = await db.execute(
        text(
            "SELECT from_status::text, to_status::text, actor FROM payment_status_history "
            "WHERE payment_id = :id ORDER BY id"
        ),
        {"id": payment_id},
    )
    return [tuple(row) for row in rows.all()]


@pytest.fixture
def service(auth: TokenFactory) -> dict[str, str]:
    return auth(SERVICE, service=True)


async def paid(db: AsyncSession, amount: str = "100.00", currency: str = "USD") -> Payment:
    return await make_payment(db, user_id=1, status=PaymentStatus.SUCCEEDED, amount=amount, currency=currency)


# --- POST /payments/{id}/refunds --------------------------------------------------------------


async def test_a_partial_refund_is_recorded_pending_and_reserves_its_amount(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str], auth: TokenFactory
) -> None:
    payment = await paid(db)
    response = await client.post(
        refunds_url(payment.id),
        json={"amount": "30.00", "reason": "booking_canceled", "refund_id": "re_1", "metadata": {"policy": "7d"}},
        headers=service,
    )
    assert response.status_code == 201, response.text
    refund = response.json()
    assert refund == {
        "id": refund["id"],
        "payment_id": payment.id,
        "amount": "30.00",
        "currency": "USD",
        "status": "pending",
        "reason": "booking_canceled",
        "refund_id": "re_1",
        "metadata": {"policy": "7d"},
        "failure_reason": None,
        "actor": f"service:{SERVICE}",
        "version": 1,
        "created_at": refund["created_at"],
        "updated_at": refund["created_at"],
    }
    assert response.headers["location"] == refunds_url(payment.id, refund["id"])
    assert response.headers["etag"] == '"1"'
    assert await refund_rows(db, payment.id) == [(Decimal("30.00"), RefundStatus.PENDING, "re_1", "service:50")]
    assert await sums(db, payment.id) == (PaymentStatus.SUCCEEDED, Decimal(0), Decimal("30.00"), 2)

    read = (await client.get(f"/api/v1/payments/{payment.id}", headers=auth(1))).json()
    assert (read["amount_refunded"], read["amount_refundable"], read["version"]) == ("0.00", "70.00", 2)
    await assert_invariant(db)


async def test_without_an_amount_everything_still_refundable_is_refunded(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str]
) -> None:
    payment = await paid(db)
    await client.post(refunds_url(payment.id), json={"amount": "25.50"}, headers=service)
    response = await client.post(refunds_url(payment.id), json={}, headers=service)
    assert response.status_code == 201, response.text
    assert (response.json()["amount"], response.json()["reason"]) == ("74.50", None)
    assert await sums(db, payment.id) == (PaymentStatus.SUCCEEDED, Decimal(0), Decimal("100.00"), 3)

    nothing_left = await client.post(refunds_url(payment.id), json={}, headers=service)
    problem = assert_problem(nothing_left, 409, "/refund-exceeds-refundable")
    assert problem["amount_refundable"] == "0.00"


async def test_a_refund_recorded_as_succeeded_counts_at_once_and_a_full_one_refunds_the_payment(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str]
) -> None:
    payment = await paid(db)
    response = await client.post(refunds_url(payment.id), json={"status": "succeeded"}, headers=service)
    assert response.status_code == 201, response.text
    status, refunded, pending, _ = await sums(db, payment.id)
    assert (status, refunded, pending) == (PaymentStatus.REFUNDED, Decimal("100.00"), Decimal(0))
    assert await history(db, payment.id) == [("succeeded", "refunded", f"service:{SERVICE}")]
    await assert_invariant(db)


async def test_more_than_is_refundable_is_refused_with_the_refundable_amount(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str]
) -> None:
    payment = await paid(db)
    await client.post(refunds_url(payment.id), json={"amount": "60.00"}, headers=service)
    response = await client.post(refunds_url(payment.id), json={"amount": "40.01"}, headers=service)
    problem = assert_problem(response, 409, "/refund-exceeds-refundable")
    assert problem["amount_refundable"] == "40.00"
    assert "40.01" in problem["detail"] and "40.00" in problem["detail"]
    assert len(await refund_rows(db, payment.id)) == 1
    assert await sums(db, payment.id) == (PaymentStatus.SUCCEEDED, Decimal(0), Decimal("60.00"), 2)


@pytest.mark.parametrize("status", [PaymentStatus.PENDING, PaymentStatus.FAILED, PaymentStatus.REFUNDED])
async def test_only_a_succeeded_payment_can_be_refunded(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str], status: PaymentStatus
) -> None:
    payment = await make_payment(db, user_id=1, status=status)
    response = await client.post(refunds_url(payment.id), json={"amount": "1.00"}, headers=service)
    problem = assert_problem(response, 409, "/payment-not-refundable")
    assert status.value in problem["detail"]
    assert await refund_rows(db, payment.id) == []


@pytest.mark.parametrize(
    ("amount", "currency", "location", "problem_type"),
    [
        ("0", "USD", "body.amount", "/validation-error"),
        ("-5.00", "USD", "body.amount", "/validation-error"),
        ("1.001", "USD", "body.amount", "/invalid-refund"),
        ("1.5", "JPY", "body.amount", "/invalid-refund"),
        ("0.0001", "KWD", "body.amount", "/invalid-refund"),
        ("NaN", "USD", "body.amount", "/validation-error"),
        ("100000000", "USD", "body.amount", "/invalid-refund"),
    ],
)
async def test_an_amount_the_currency_cannot_hold_is_a_422_naming_it(
    client: httpx.AsyncClient,
    db: AsyncSession,
    service: dict[str, str],
    amount: str,
    currency: str,
    location: str,
    problem_type: str,
) -> None:
    payment = await paid(db, {"USD": "20.00", "JPY": "2000", "KWD": "20.000"}[currency], currency)
    response = await client.post(refunds_url(payment.id), json={"amount": amount}, headers=service)
    problem = assert_problem(response, 422, problem_type)
    assert error_locations(problem) == {location}
    assert await refund_rows(db, payment.id) == []


@pytest.mark.parametrize(
    "body",
    [
        {"reason": "bored"},
        {"status": "failed"},
        {"refund_id": "has space"},
        {"metadata": {"k": "v" * 501}},
        {"amount": "1.00", "extra": 1},
    ],
)
async def test_a_malformed_body_is_a_422_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str], body: dict[str, Any]
) -> None:
    payment = await paid(db)
    assert_problem(await client.post(refunds_url(payment.id), json=body, headers=service), 422, "/validation-error")
    assert await refund_rows(db, payment.id) == []


async def test_a_gateway_refund_id_is_recorded_once_per_provider(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str]
) -> None:
    first, second = await paid(db), await paid(db)
    assert (
        await client.post(refunds_url(first.id), json={"amount": "1.00", "refund_id": "re_once"}, headers=service)
    ).status_code == 201
    again = await client.post(refunds_url(second.id), json={"amount": "1.00", "refund_id": "re_once"}, headers=service)
    assert_problem(again, 409, "/duplicate-refund")
    assert await refund_rows(db, second.id) == []
    assert await sums(db, second.id) == (PaymentStatus.SUCCEEDED, Decimal(0), Decimal(0), 1)


async def test_end_users_may_not_record_refunds_even_of_their_own_payments(
    client: httpx.AsyncClient, db: AsyncSession, auth: TokenFactory
) -> None:
    payment = await paid(db)
    response = await client.post(refunds_url(payment.id), json={"amount": "1.00"}, headers=auth(1))
    assert_problem(response, 403, "/forbidden")
    assert await refund_rows(db, payment.id) == []


async def test_admins_record_refunds_and_a_missing_payment_is_a_404(
    client: httpx.AsyncClient, db: AsyncSession, auth: TokenFactory
) -> None:
    payment = await paid(db)
    response = await client.post(refunds_url(payment.id), json={"amount": "1.00"}, headers=auth(9, admin=True))
    assert response.status_code == 201 and response.json()["actor"] == "admin:9"
    missing = await client.post(refunds_url(10**12), json={"amount": "1.00"}, headers=auth(9, admin=True))
    assert_problem(missing, 404, "/payment-not-found")


async def test_an_idempotency_key_replays_the_first_refund(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str]
) -> None:
    payment = await paid(db)
    headers = {**service, "Idempotency-Key": "refund-1"}
    first = await client.post(refunds_url(payment.id), json={"amount": "10.00"}, headers=headers)
    again = await client.post(refunds_url(payment.id), json={"amount": "10.00"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert len(await refund_rows(db, payment.id)) == 1
    other = await client.post(refunds_url(payment.id), json={"amount": "11.00"}, headers=headers)
    assert_problem(other, 422, "/idempotency-key-reused")


async def test_a_refused_refund_with_a_key_replays_its_refusal(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str]
) -> None:
    payment = await paid(db)
    headers = {**service, "Idempotency-Key": "too-much"}
    first = await client.post(refunds_url(payment.id), json={"amount": "100.01"}, headers=headers)
    assert_problem(first, 409, "/refund-exceeds-refundable")
    again = await client.post(refunds_url(payment.id), json={"amount": "100.01"}, headers=headers)
    assert (again.status_code, again.content) == (409, first.content)
    assert await refund_rows(db, payment.id) == []


# --- reading refunds ----------------------------------------------------------------------------


async def test_the_owner_lists_and_reads_refunds_oldest_first_page_by_page(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str], auth: TokenFactory
) -> None:
    payment = await paid(db)
    created = [
        (await client.post(refunds_url(payment.id), json={"amount": f"{n}.00"}, headers=service)).json()
        for n in (1, 2, 3)
    ]
    first = await client.get(refunds_url(payment.id), params={"size": 2}, headers=auth(1))
    assert first.status_code == 200
    assert [item["id"] for item in first.json()["items"]] == [created[0]["id"], created[1]["id"]]
    assert first.json()["items"][0] == created[0]
    rest = await client.get(refunds_url(payment.id), params={"cursor": first.json()["next_cursor"]}, headers=auth(1))
    assert rest.json() == {"items": [created[2]], "next_cursor": None}

    one = await client.get(refunds_url(payment.id, created[1]["id"]), headers=auth(1))
    assert (one.status_code, one.json(), one.headers["etag"]) == (200, created[1], '"1"')


async def test_someone_else_s_payment_and_another_payment_s_refund_are_not_found(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str], auth: TokenFactory
) -> None:
    payment, other = await paid(db), await paid(db)
    refund = (await client.post(refunds_url(payment.id), json={"amount": "1.00"}, headers=service)).json()
    assert_problem(await client.get(refunds_url(payment.id), headers=auth(2)), 404, "/payment-not-found")
    assert_problem(await client.get(refunds_url(payment.id, refund["id"]), headers=auth(2)), 404, "/payment-not-found")
    assert_problem(await client.get(refunds_url(other.id, refund["id"]), headers=auth(1)), 404, "/refund-not-found")
    assert_problem(await client.get(refunds_url(payment.id), params={"cursor": "nope"}, headers=auth(1)), 422)


# --- PATCH /payments/{id}/refunds/{refund}/status -------------------------------------------------


async def change(
    client: httpx.AsyncClient, payment_id: int, refund_id: int, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.patch(f"{refunds_url(payment_id, refund_id)}/status", json=body, headers=headers)


async def test_a_succeeded_refund_is_counted_and_the_last_one_refunds_the_payment(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str]
) -> None:
    payment = await paid(db)
    first = (await client.post(refunds_url(payment.id), json={"amount": "40.00"}, headers=service)).json()
    second = (await client.post(refunds_url(payment.id), json={"amount": "60.00"}, headers=service)).json()

    response = await change(client, payment.id, first["id"], service, status="succeeded")
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["version"], response.headers["etag"]) == ("succeeded", 2, '"2"')
    assert (await sums(db, payment.id))[:3] == (PaymentStatus.SUCCEEDED, Decimal("40.00"), Decimal("60.00"))
    assert await history(db, payment.id) == []

    await change(client, payment.id, second["id"], service, status="succeeded")
    assert (await sums(db, payment.id))[:3] == (PaymentStatus.REFUNDED, Decimal("100.00"), Decimal(0))
    assert await history(db, payment.id) == [("succeeded", "refunded", f"service:{SERVICE}")]
    await assert_invariant(db)


@pytest.mark.parametrize("outcome", ["failed", "canceled"])
async def test_a_failed_or_canceled_refund_releases_what_it_reserved(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str], outcome: str
) -> None:
    payment = await paid(db)
    refund = (await client.post(refunds_url(payment.id), json={"amount": "100.00"}, headers=service)).json()
    body = {"status": outcome, **({"failure_reason": "expired_or_canceled_card"} if outcome == "failed" else {})}
    response = await change(client, payment.id, refund["id"], service, **body)
    assert response.status_code == 200, response.text
    assert response.json()["failure_reason"] == body.get("failure_reason")
    assert await sums(db, payment.id) == (PaymentStatus.SUCCEEDED, Decimal(0), Decimal(0), 3)
    again = await client.post(refunds_url(payment.id), json={}, headers=service)
    assert again.json()["amount"] == "100.00"
    await assert_invariant(db)


async def test_final_refund_statuses_stay_final_and_the_same_status_is_a_no_op(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str]
) -> None:
    payment = await paid(db)
    refund = (await client.post(refunds_url(payment.id), json={"amount": "10.00"}, headers=service)).json()
    unchanged = await change(client, payment.id, refund["id"], service, status="pending")
    assert (unchanged.status_code, unchanged.json()["version"]) == (200, 1)
    await change(client, payment.id, refund["id"], service, status="failed")
    same = await change(client, payment.id, refund["id"], service, status="failed")
    assert (same.status_code, same.json()["version"]) == (200, 2)
    for target in ("succeeded", "canceled", "pending"):
        problem = assert_problem(await change(client, payment.id, refund["id"], service, status=target), 409)
        assert problem["type"].endswith("/illegal-status-transition") and "failed" in problem["detail"]
    assert await sums(db, payment.id) == (PaymentStatus.SUCCEEDED, Decimal(0), Decimal(0), 3)


async def test_refund_status_changes_honour_if_match_and_roles(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str], auth: TokenFactory
) -> None:
    payment = await paid(db)
    refund = (await client.post(refunds_url(payment.id), json={"amount": "10.00"}, headers=service)).json()
    stale = await change(client, payment.id, refund["id"], {**service, "If-Match": '"7"'}, status="succeeded")
    assert_problem(stale, 412, "/precondition-failed")
    user = await change(client, payment.id, refund["id"], auth(1), status="succeeded")
    assert_problem(user, 403, "/forbidden")
    bad = await change(client, payment.id, refund["id"], service, status="succeeded", failure_reason="x")
    assert_problem(bad, 422, "/validation-error")
    assert_problem(await change(client, payment.id, 10**12, service, status="succeeded"), 404, "/refund-not-found")
    assert (await refund_rows(db, payment.id))[0][1] is RefundStatus.PENDING
    fresh = await change(client, payment.id, refund["id"], {**service, "If-Match": '"1"'}, status="succeeded")
    assert fresh.status_code == 200


# --- PATCH /payments/{id}/status refunded ----------------------------------------------------------


async def test_refunding_a_payment_records_a_refund_of_what_is_left(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str]
) -> None:
    payment = await paid(db)
    partial = (
        await client.post(refunds_url(payment.id), json={"amount": "30.00", "status": "succeeded"}, headers=service)
    ).json()
    response = await client.patch(
        f"/api/v1/payments/{payment.id}/status", json={"payment_status": "refunded"}, headers=service
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["payment_status"], body["amount_refunded"], body["amount_refundable"]) == (
        "refunded",
        "100.00",
        "0.00",
    )
    assert await refund_rows(db, payment.id) == [
        (Decimal("30.00"), RefundStatus.SUCCEEDED, None, "service:50"),
        (Decimal("70.00"), RefundStatus.SUCCEEDED, None, "service:50"),
    ]
    assert partial["status"] == "succeeded"
    assert await history(db, payment.id) == [("succeeded", "refunded", f"service:{SERVICE}")]
    again = await client.patch(
        f"/api/v1/payments/{payment.id}/status", json={"payment_status": "refunded"}, headers=service
    )
    assert (again.status_code, again.json()["version"]) == (200, body["version"])
    assert len(await refund_rows(db, payment.id)) == 2
    await assert_invariant(db)


async def test_refunding_a_payment_with_a_pending_refund_is_a_409(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str]
) -> None:
    payment = await paid(db)
    await client.post(refunds_url(payment.id), json={"amount": "30.00"}, headers=service)
    response = await client.patch(
        f"/api/v1/payments/{payment.id}/status", json={"payment_status": "refunded"}, headers=service
    )
    problem = assert_problem(response, 409, "/refund-pending")
    assert "30.00" in problem["detail"]
    assert await sums(db, payment.id) == (PaymentStatus.SUCCEEDED, Decimal(0), Decimal("30.00"), 2)


@pytest.mark.parametrize(
    ("currency", "total", "parts", "shown"),
    [
        ("JPY", "1000", ["333", "333", "334"], ["333", "333", "334"]),
        ("KWD", "1.000", ["0.333", "0.333", "0.334"], ["0.333", "0.333", "0.334"]),
    ],
)
async def test_three_partial_refunds_make_a_full_one_to_the_minor_unit(
    client: httpx.AsyncClient,
    db: AsyncSession,
    service: dict[str, str],
    auth: TokenFactory,
    currency: str,
    total: str,
    parts: list[str],
    shown: list[str],
) -> None:
    payment = await paid(db, total, currency)
    for part, expected in zip(parts, shown, strict=True):
        response = await client.post(
            refunds_url(payment.id), json={"amount": part, "status": "succeeded"}, headers=service
        )
        assert (response.status_code, response.json()["amount"]) == (201, expected)
    read = (await client.get(f"/api/v1/payments/{payment.id}", headers=auth(1))).json()
    assert (read["payment_status"], read["amount_refunded"], read["amount_refundable"]) == (
        "refunded",
        total,
        "0" if currency == "JPY" else "0.000",
    )
    assert await history(db, payment.id) == [("succeeded", "refunded", f"service:{SERVICE}")]
    await assert_invariant(db)


def refunds_counted(status: str, currency: str) -> float:
    return REGISTRY.get_sample_value("refunds_total", {"status": status, "currency": currency}) or 0.0


async def test_refunds_are_counted_by_the_status_they_reach_and_currency(
    client: httpx.AsyncClient, db: AsyncSession, service: dict[str, str]
) -> None:
    payment = await paid(db, "5000", "JPY")
    before = {status: refunds_counted(status, "JPY") for status in ("pending", "succeeded", "failed")}
    first = (await client.post(refunds_url(payment.id), json={"amount": "100"}, headers=service)).json()
    await client.post(refunds_url(payment.id), json={"amount": "200"}, headers=service)
    await change(client, payment.id, first["id"], service, status="failed")
    await client.post(refunds_url(payment.id), json={"amount": "300", "status": "succeeded"}, headers=service)
    after = {status: refunds_counted(status, "JPY") - before[status] for status in before}
    assert after == {"pending": 2, "succeeded": 1, "failed": 1}
    metrics = await client.get("/metrics")
    assert 'refunds_total{currency="JPY",status="succeeded"}' in metrics.text
