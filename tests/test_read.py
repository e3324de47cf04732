"""Reading payments: by id, by the gateway's payment id, and by booking."""

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, PaymentProvider, PaymentStatus
from tests.conftest import TokenFactory, make_payment, utc
from tests.helpers import assert_problem, error_locations

PAYMENTS = "/api/v1/payments"
MAX_ID = 2**63 - 1
NOT_FOUND_BODY = {
    "type": "/problems/payment-not-found",
    "title": "Payment not found",
    "status": 404,
    "detail": "Payment not found",
}


def url(payment_id: int | str) -> str:
    return f"{PAYMENTS}/{payment_id}"


def gateway_url(gateway_id: str) -> str:
    return f"{PAYMENTS}/payment-gateway/{gateway_id}"


def booking_url(booking_id: str) -> str:
    return f"{PAYMENTS}/booking/{booking_id}"


def ids(response: httpx.Response) -> list[int]:
    """The ids on a page of a booking's payments, which must be its last page."""
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["next_cursor"] is None, body
    return [item["id"] for item in body["items"]]


async def full_payment(db: AsyncSession, *, user_id: int = 7) -> Payment:
    """A payment with every optional field filled in."""
    return await make_payment(
        db,
        user_id=user_id,
        status=PaymentStatus.SUCCEEDED,
        amount="99.99",
        currency="USD",
        provider=PaymentProvider.PAYPAL,
        created_at=utc(2026, 2, 3, 4, 5, 6),
        payment_id="pi_full_1",
        checkout_session_id="cs_full_1",
        payment_method_id="pm_full_1",
        payment_method_types=["card", "sepa_debit"],
        customer_id="cus_1",
        customer_email="guest@example.com",
        booking_id="bk_full",
        property_id="prop_full",
        description="Two nights",
    )


def full_payment_body(payment_id: int, *, user_id: int = 7) -> dict[str, Any]:
    return {
        "id": payment_id,
        "payment_id": "pi_full_1",
        "checkout_session_id": "cs_full_1",
        "payment_method_id": "pm_full_1",
        "payment_method_types": ["card", "sepa_debit"],
        "payment_status": "succeeded",
        "provider": "paypal",
        "currency": "USD",
        "amount_total": "99.99",
        "amount_refunded": "0.00",
        "amount_refundable": "99.99",
        "customer_id": "cus_1",
        "customer_email": "guest@example.com",
        "booking_id": "bk_full",
        "property_id": "prop_full",
        "user_id": user_id,
        "description": "Two nights",
        "metadata": {},
        "version": 1,
        "created_at": "2026-02-03T04:05:06Z",
        "updated_at": "2026-02-03T04:05:06Z",
    }


# --- GET /payments/{id} ---------------------------------------------------------------------------


async def test_owner_reads_the_whole_payment(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    payment = await full_payment(db)
    response = await client.get(url(payment.id), headers=auth(7))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == full_payment_body(payment.id)


async def test_payment_with_only_required_fields_reads_nulls_and_empty_lists(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(
        db,
        user_id=3,
        amount="10",
        currency="EUR",
        created_at=utc(2026, 5, 6, 7, 8, 9),
        payment_id=None,
        checkout_session_id="cs_only",
    )
    response = await client.get(url(payment.id), headers=auth(3))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": payment.id,
        "payment_id": None,
        "checkout_session_id": "cs_only",
        "payment_method_id": None,
        "payment_method_types": [],
        "payment_status": "pending",
        "provider": "stripe",
        "currency": "EUR",
        "amount_total": "10.00",
        "amount_refunded": "0.00",
        "amount_refundable": "10.00",
        "customer_id": None,
        "customer_email": None,
        "booking_id": None,
        "property_id": None,
        "user_id": 3,
        "description": None,
        "metadata": {},
        "version": 1,
        "created_at": "2026-05-06T07:08:09Z",
        "updated_at": "2026-05-06T07:08:09Z",
    }


async def test_admin_reads_anyone_s_payment(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    payment = await full_payment(db, user_id=7)
    response = await client.get(url(payment.id), headers=auth(99, admin=True))
    assert response.status_code == 200, response.text
    assert response.json() == full_payment_body(payment.id, user_id=7)


async def test_someone_else_s_payment_is_404_exactly_like_a_missing_one(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await full_payment(db, user_id=7)
    foreign = await client.get(url(payment.id), headers=auth(8))
    missing = await client.get(url(MAX_ID), headers=auth(8))
    foreign_body = assert_problem(foreign, 404, "/payment-not-found")
    missing_body = assert_problem(missing, 404, "/payment-not-found")
    assert foreign_body == missing_body == NOT_FOUND_BODY
    assert foreign.content == missing.content
    assert "etag" not in foreign.headers
    assert sorted(foreign.headers.keys()) == sorted(missing.headers.keys())


async def test_a_foreign_id_and_a_never_used_id_answer_the_same(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    mine = await make_payment(db, user_id=1)
    theirs = await make_payment(db, user_id=2)
    answers = [await client.get(url(i), headers=auth(1)) for i in (theirs.id, theirs.id + 1000)]
    assert [assert_problem(answer, 404, "/payment-not-found") for answer in answers] == [NOT_FOUND_BODY] * 2
    assert answers[0].content == answers[1].content
    own = await client.get(url(mine.id), headers=auth(1))
    assert own.status_code == 200
    assert own.json()["id"] == mine.id


@pytest.mark.parametrize(
    ("raw_id", "error_type"),
    [
        ("0", "greater_than_equal"),
        ("-1", "greater_than_equal"),
        ("-9223372036854775808", "greater_than_equal"),
        ("abc", "int_parsing"),
        ("1.5", "int_parsing"),
        ("1e3", "int_parsing"),
        (str(2**63), "less_than_equal"),
        (str(10**30), "less_than_equal"),
    ],
)
async def test_invalid_id_is_422_naming_the_path_id(
    client: httpx.AsyncClient, auth: TokenFactory, raw_id: str, error_type: str
) -> None:
    problem = assert_problem(await client.get(url(raw_id), headers=auth(1)), 422, "/validation-error")
    assert error_locations(problem) == {"path.id"}
    assert [error["type"] for error in problem["errors"]] == [error_type]


async def test_the_largest_bigint_id_is_valid_and_just_not_found(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    body = assert_problem(await client.get(url(MAX_ID), headers=auth(1, admin=True)), 404, "/payment-not-found")
    assert body == NOT_FOUND_BODY


@pytest.mark.parametrize(
    ("currency", "stored", "returned"),
    [
        ("USD", "100", "100.00"),
        ("USD", "0.5", "0.50"),
        ("EUR", "99999999.99", "99999999.99"),
        ("JPY", "1500", "1500"),
        ("KRW", "1", "1"),
        ("KWD", "1.25", "1.250"),
        ("BHD", "0.001", "0.001"),
        ("CLF", "1.5", "1.5000"),
    ],
)
async def test_amount_has_exactly_the_currency_minor_units(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, currency: str, stored: str, returned: str
) -> None:
    payment = await make_payment(db, user_id=1, amount=stored, currency=currency, booking_id="bk_amount")
    assert payment.payment_id is not None
    by_id = await client.get(url(payment.id), headers=auth(1))
    by_gateway = await client.get(gateway_url(payment.payment_id), headers=auth(1))
    by_booking = await client.get(booking_url("bk_amount"), headers=auth(1))
    assert by_id.status_code == by_gateway.status_code == by_booking.status_code == 200
    assert (by_id.json()["currency"], by_id.json()["amount_total"]) == (currency, returned)
    assert by_gateway.json()["amount_total"] == returned
    assert [item["amount_total"] for item in by_booking.json()["items"]] == [returned]


# --- GET /payments/payment-gateway/{payment_id} --------------------------------------------------


async def test_owner_reads_a_payment_by_its_gateway_id(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await full_payment(db, user_id=7)
    await make_payment(db, user_id=7, payment_id="pi_full_10")
    response = await client.get(gateway_url("pi_full_1"), headers=auth(7))
    assert response.status_code == 200, response.text
    assert response.json() == full_payment_body(payment.id)


async def test_admin_reads_anyone_s_payment_by_gateway_id(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await full_payment(db, user_id=7)
    response = await client.get(gateway_url("pi_full_1"), headers=auth(1, admin=True))
    assert response.status_code == 200, response.text
    assert response.json() == full_payment_body(payment.id, user_id=7)


async def test_someone_else_s_gateway_id_is_404_exactly_like_a_missing_one(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await full_payment(db, user_id=7)
    foreign = await client.get(gateway_url("pi_full_1"), headers=auth(8))
    missing = await client.get(gateway_url("pi_never_issued"), headers=auth(8))
    assert assert_problem(foreign, 404, "/payment-not-found") == NOT_FOUND_BODY
    assert assert_problem(missing, 404, "/payment-not-found") == NOT_FOUND_BODY
    assert foreign.content == missing.content
    assert "etag" not in foreign.headers
    assert sorted(foreign.headers.keys()) == sorted(missing.headers.keys())


async def test_gateway_404_matches_the_id_404(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    payment = await make_payment(db, user_id=7, payment_id="pi_gw_x")
    by_gateway = await client.get(gateway_url("pi_gw_x"), headers=auth(8))
    by_id = await client.get(url(payment.id), headers=auth(8))
    assert assert_problem(by_gateway, 404) == assert_problem(by_id, 404) == NOT_FOUND_BODY


async def test_gateway_id_must_match_exactly(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    await make_payment(db, user_id=1, payment_id="pi_exact_12")
    for near_miss in ("pi_exact_1", "pi_exact_123", "PI_EXACT_12"):
        response = await client.get(gateway_url(near_miss), headers=auth(1))
        assert assert_problem(response, 404, "/payment-not-found") == NOT_FOUND_BODY, near_miss


# --- GET /payments/booking/{booking_id} ----------------------------------------------------------


async def test_booking_lists_the_caller_s_payments_oldest_first(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    later = await make_payment(db, user_id=1, booking_id="bk_1", created_at=utc(2026, 3, 2))
    earlier = await make_payment(db, user_id=1, booking_id="bk_1", created_at=utc(2026, 3, 1))
    latest = await make_payment(db, user_id=1, booking_id="bk_1", created_at=utc(2026, 3, 3))
    await make_payment(db, user_id=1, booking_id="bk_2", created_at=utc(2026, 3, 1, 12))
    await make_payment(db, user_id=1, booking_id=None, created_at=utc(2026, 3, 1, 13))
    await make_payment(db, user_id=2, booking_id="bk_1", created_at=utc(2026, 3, 1, 14))
    response = await client.get(booking_url("bk_1"), headers=auth(1))
    assert ids(response) == [earlier.id, later.id, latest.id]


async def test_booking_items_have_the_full_payment_shape(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await full_payment(db, user_id=7)
    response = await client.get(booking_url("bk_full"), headers=auth(7))
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [full_payment_body(payment.id)], "next_cursor": None}


async def test_booking_ties_on_created_at_are_ordered_by_id(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    same_time = utc(2026, 4, 1, 9)
    after = await make_payment(db, user_id=1, booking_id="bk_tie", created_at=same_time + timedelta(microseconds=1))
    first = await make_payment(db, user_id=1, booking_id="bk_tie", created_at=same_time)
    second = await make_payment(db, user_id=1, booking_id="bk_tie", created_at=same_time)
    third = await make_payment(db, user_id=1, booking_id="bk_tie", created_at=same_time)
    assert first.id < second.id < third.id
    assert ids(await client.get(booking_url("bk_tie"), headers=auth(1))) == [first.id, second.id, third.id, after.id]


async def test_booking_without_payments_is_an_empty_list(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    response = await client.get(booking_url("bk_nothing"), headers=auth(1))
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


async def test_someone_else_s_booking_is_an_empty_list(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await make_payment(db, user_id=2, booking_id="bk_theirs")
    response = await client.get(booking_url("bk_theirs"), headers=auth(1))
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


async def test_admin_sees_every_user_s_payments_for_a_booking(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    third = await make_payment(db, user_id=3, booking_id="bk_shared", created_at=utc(2026, 3, 3))
    first = await make_payment(db, user_id=1, booking_id="bk_shared", created_at=utc(2026, 3, 1))
    second = await make_payment(db, user_id=2, booking_id="bk_shared", created_at=utc(2026, 3, 2))
    await make_payment(db, user_id=2, booking_id="bk_other", created_at=utc(2026, 3, 2))
    admin = await client.get(booking_url("bk_shared"), headers=auth(50, admin=True))
    assert ids(admin) == [first.id, second.id, third.id]
    assert [item["user_id"] for item in admin.json()["items"]] == [1, 2, 3]
    assert ids(await client.get(booking_url("bk_shared"), headers=auth(2))) == [second.id]


async def test_a_booking_is_paged_100_at_most_with_a_cursor_to_the_rest(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    made = [
        (await make_payment(db, user_id=1, booking_id="bk_big", created_at=utc(2026, 5, 1) + timedelta(seconds=n))).id
        for n in range(103)
    ]
    first = await client.get(booking_url("bk_big"), headers=auth(1))
    assert first.status_code == 200
    assert [item["id"] for item in first.json()["items"]] == made[:100]  # the documented maximum
    rest = await client.get(booking_url("bk_big"), params={"cursor": first.json()["next_cursor"]}, headers=auth(1))
    assert ids(rest) == made[100:]
    small = await client.get(booking_url("bk_big"), params={"size": 2}, headers=auth(1))
    assert [item["id"] for item in small.json()["items"]] == made[:2]
    for size in ("0", "101"):
        response = await client.get(booking_url("bk_big"), params={"size": size}, headers=auth(1))
        assert error_locations(assert_problem(response, 422, "/validation-error")) == {"query.size"}
    bad_cursor = await client.get(booking_url("bk_big"), params={"cursor": "not-ours"}, headers=auth(1))
    assert error_locations(assert_problem(bad_cursor, 422, "/validation-error")) == {"query.cursor"}


async def test_booking_id_is_matched_exactly(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    await make_payment(db, user_id=1, booking_id="BK_Case")
    await make_payment(db, user_id=1, booking_id="bk_case_2")
    for other in ("bk_case", "BK_CASE", "BK_Cas", "bk_case_"):
        response = await client.get(booking_url(other), headers=auth(1))
        assert response.status_code == 200
        assert response.json() == {"items": [], "next_cursor": None}, other


async def test_booking_id_longer_than_64_characters_is_422(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    problem = assert_problem(await client.get(booking_url("b" * 65), headers=auth(1)), 422, "/validation-error")
    assert error_locations(problem) == {"path.booking_id"}


# --- authentication --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [url(1), gateway_url("pi_1"), booking_url("bk_1")])
async def test_reads_need_a_bearer_token(client: httpx.AsyncClient, db: AsyncSession, path: str) -> None:
    await make_payment(db, user_id=1, payment_id="pi_1", booking_id="bk_1")
    missing = await client.get(path)
    assert_problem(missing, 401, "/not-authenticated")
    assert missing.headers["www-authenticate"] == "Bearer"
    garbage = await client.get(path, headers={"Authorization": "Bearer not-a-jwt"})
    assert_problem(garbage, 401, "/not-authenticated")
