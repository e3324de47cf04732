from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, PaymentProvider, PaymentStatus
from tests.conftest import TokenFactory, make_payment
from tests.helpers import assert_problem, error_locations, payment_count, stored

PAYMENTS = "/api/v1/payments/"


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "payment_id": "pi_3Nabc123",
        "provider": "stripe",
        "currency": "usd",
        "amount_total": "99.99",
        **overrides,
    }


async def test_create_returns_201_with_the_stored_payment(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    request = body(
        checkout_session_id="cs_test_1",
        payment_method_id="pm_1",
        payment_method_types=["card", "sepa_debit"],
        customer_id="cus_1",
        customer_email="guest@example.com",
        booking_id="bk_1",
        property_id="prop_1",
        description="Two nights",
    )
    response = await client.post(PAYMENTS, json=request, headers=auth(7))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created == {
        "id": created["id"],
        "payment_id": "pi_3Nabc123",
        "checkout_session_id": "cs_test_1",
        "payment_method_id": "pm_1",
        "payment_method_types": ["card", "sepa_debit"],
        "payment_status": "pending",
        "provider": "stripe",
        "currency": "USD",
        "amount_total": "99.99",
        "amount_refunded": "0.00",
        "amount_refundable": "99.99",
        "customer_id": "cus_1",
        "customer_email": "guest@example.com",
        "booking_id": "bk_1",
        "property_id": "prop_1",
        "user_id": 7,
        "description": "Two nights",
        "metadata": {},
        "version": 1,
        "created_at": created["created_at"],
        "updated_at": created["created_at"],
    }
    assert created["created_at"].endswith("Z") or created["created_at"].endswith("+00:00")

    row = await stored(db, created["id"])
    assert row is not None
    assert row.user_id == 7
    assert row.currency == "USD"
    assert row.amount_total == Decimal("99.99")
    assert row.payment_status is PaymentStatus.PENDING
    assert row.provider is PaymentProvider.STRIPE
    assert row.payment_method_types == ["card", "sepa_debit"]


async def test_create_with_only_a_checkout_session(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    response = await client.post(PAYMENTS, json=body(payment_id=None, checkout_session_id="cs_only"), headers=auth(1))
    assert response.status_code == 201
    assert response.json()["payment_id"] is None
    assert response.json()["checkout_session_id"] == "cs_only"


@pytest.mark.parametrize("status", [status for status in PaymentStatus if status is not PaymentStatus.REFUNDED])
async def test_a_backend_may_create_in_any_status_but_refunded(
    client: httpx.AsyncClient, auth: TokenFactory, status: PaymentStatus
) -> None:
    response = await client.post(PAYMENTS, json=body(payment_status=status.value), headers=auth(1, service=True))
    assert response.status_code == 201
    assert response.json()["payment_status"] == status.value


async def test_a_payment_is_not_created_as_refunded(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    """A refunded payment has refunds that say how much went back and when: it is created as
    succeeded and its refund recorded."""
    response = await client.post(PAYMENTS, json=body(payment_status="refunded"), headers=auth(1, service=True))
    problem = assert_problem(response, 422, "validation-error")
    assert error_locations(problem) == {"body.payment_status"}
    assert await payment_count(db) == 0


async def test_user_id_in_the_body_never_overrides_the_token(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    response = await client.post(PAYMENTS, json=body(user_id=999), headers=auth(7))
    assert response.status_code == 201
    assert response.json()["user_id"] == 7
    assert (await stored(db, response.json()["id"])).user_id == 7  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("currency", "sent", "returned"),
    [
        ("USD", "99.99", "99.99"),
        ("USD", "100", "100.00"),
        ("usd", 100, "100.00"),
        ("USD", 99.99, "99.99"),
        ("EUR", "0.01", "0.01"),
        ("JPY", "1500", "1500"),
        ("JPY", 1500, "1500"),
        ("KRW", "1500.0", "1500"),
        ("KWD", "1.25", "1.250"),
        ("BHD", "0.001", "0.001"),
        ("CLF", "1.2345", "1.2345"),
        ("USD", "99999999.99", "99999999.99"),
        ("USD", "1e2", "100.00"),
    ],
)
async def test_amount_is_returned_with_the_currency_minor_units(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    db: AsyncSession,
    currency: str,
    sent: str | int | float,
    returned: str,
) -> None:
    response = await client.post(PAYMENTS, json=body(currency=currency, amount_total=sent), headers=auth(1))
    assert response.status_code == 201, response.text
    assert response.json()["amount_total"] == returned
    assert response.json()["currency"] == currency.upper()
    row = await stored(db, response.json()["id"])
    assert row is not None and row.amount_total == Decimal(returned)


@pytest.mark.parametrize(
    ("currency", "amount"),
    [
        ("USD", "10.001"),
        ("USD", 10.001),
        ("EUR", "0.005"),
        ("JPY", "1500.5"),
        ("JPY", "0.1"),
        ("KWD", "1.2345"),
        ("USD", "0"),
        ("USD", "-5.00"),
        ("USD", "0.00"),
        ("USD", "100000000.00"),
        ("USD", "99999999.991"),
        ("USD", "NaN"),
        ("USD", "Infinity"),
        ("USD", "abc"),
        ("USD", True),
        ("USD", None),
        ("USD", ""),
    ],
)
async def test_bad_amount_is_422_and_nothing_is_written(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, currency: str, amount: object
) -> None:
    response = await client.post(PAYMENTS, json=body(currency=currency, amount_total=amount), headers=auth(1))
    problem = assert_problem(response, 422, "/validation-error")
    assert error_locations(problem) == {"body.amount_total"}
    assert await payment_count(db) == 0


@pytest.mark.parametrize("currency", ["XYZ", "US", "USDD", "", "12$", "xau", None])
async def test_unknown_currency_is_422(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, currency: str | None
) -> None:
    problem = assert_problem(await client.post(PAYMENTS, json=body(currency=currency), headers=auth(1)), 422)
    assert error_locations(problem) == {"body.currency"}
    assert await payment_count(db) == 0


@pytest.mark.parametrize(
    ("overrides", "location"),
    [
        ({"provider": "venmo"}, "body.provider"),
        ({"provider": None}, "body.provider"),
        ({"payment_status": "paid"}, "body.payment_status"),
        ({"customer_email": "not-an-email"}, "body.customer_email"),
        ({"booking_id": "b" * 65}, "body.booking_id"),
        ({"property_id": ""}, "body.property_id"),
        ({"customer_id": 12}, "body.customer_id"),
        ({"payment_id": "has space"}, "body.payment_id"),
        ({"payment_id": "p" * 256}, "body.payment_id"),
        ({"payment_method_types": "card"}, "body.payment_method_types"),
        ({"payment_method_types": [""]}, "body.payment_method_types.0"),
        ({"description": "d" * 1001}, "body.description"),
        ({"unknown_field": 1}, "body.unknown_field"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, overrides: dict[str, Any], location: str
) -> None:
    problem = assert_problem(await client.post(PAYMENTS, json=body(**overrides), headers=auth(1)), 422)
    assert location in error_locations(problem)
    assert await payment_count(db) == 0


async def test_missing_required_fields_are_all_listed(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    problem = assert_problem(await client.post(PAYMENTS, json={"payment_id": "pi_1"}, headers=auth(1)), 422)
    assert error_locations(problem) == {"body.provider", "body.currency", "body.amount_total"}


async def test_a_gateway_reference_is_required(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    response = await client.post(PAYMENTS, json=body(payment_id=None), headers=auth(1))
    problem = assert_problem(response, 422)
    assert "payment_id or checkout_session_id" in problem["errors"][0]["message"]
    assert await payment_count(db) == 0


@pytest.mark.parametrize("raw", [b"not json", b"{", b"[]", b'"text"', b"", b'{"amount_total": 1,}'])
async def test_body_that_is_not_a_json_object_is_422(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, raw: bytes
) -> None:
    headers = {**auth(1), "Content-Type": "application/json"}
    assert_problem(await client.post(PAYMENTS, content=raw, headers=headers), 422, "/validation-error")
    assert await payment_count(db) == 0


async def test_duplicate_payment_id_is_409_and_keeps_the_first(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    first = await client.post(PAYMENTS, json=body(), headers=auth(1))
    assert first.status_code == 201
    second = await client.post(PAYMENTS, json=body(amount_total="5.00"), headers=auth(2))
    assert_problem(second, 409, "/duplicate-payment")
    rows = list(await db.scalars(select(Payment)))
    assert [(row.id, row.user_id, row.amount_total) for row in rows] == [(first.json()["id"], 1, Decimal("99.99"))]


async def test_duplicate_checkout_session_id_is_409(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await make_payment(db, payment_id=None, checkout_session_id="cs_taken")
    response = await client.post(
        PAYMENTS, json=body(payment_id="pi_new", checkout_session_id="cs_taken"), headers=auth(1)
    )
    assert_problem(response, 409, "/duplicate-payment")
    assert await payment_count(db) == 1


async def test_create_without_token_writes_nothing(client: httpx.AsyncClient, db: AsyncSession) -> None:
    assert_problem(await client.post(PAYMENTS, json=body()), 401)
    assert await payment_count(db) == 0


async def test_a_body_that_is_not_utf8_is_422(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    headers = {**auth(1), "Content-Type": "application/json"}
    problem = assert_problem(await client.post(PAYMENTS, content=b"\xff\xfe{", headers=headers), 422)
    assert problem["errors"] == [{"location": "body", "message": "The body is not valid JSON", "type": "json_invalid"}]
    assert await payment_count(db) == 0
