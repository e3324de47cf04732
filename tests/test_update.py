from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import PaymentStatus as S
from tests.conftest import TokenFactory, make_payment
from tests.helpers import assert_problem, error_locations, stored


def url(payment_id: int) -> str:
    return f"/api/v1/payments/{payment_id}"


async def test_put_changes_only_the_fields_sent(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, description="old", booking_id="bk_1", customer_id="cus_1")
    changes = {
        "description": "new",
        "customer_email": "a@example.com",
        "payment_method_id": "pm_9",
        "payment_method_types": ["card"],
        "property_id": "prop_9",
        "customer_id": None,
    }
    response = await client.put(url(payment.id), json=changes, headers=auth(1))
    assert response.status_code == 200, response.text
    updated = response.json()
    assert {key: updated[key] for key in changes} == changes
    assert updated["booking_id"] == "bk_1"
    assert updated["updated_at"] != updated["created_at"]
    row = await stored(db, payment.id)
    assert row is not None
    assert (row.description, row.customer_email, row.customer_id, row.booking_id) == (
        "new",
        "a@example.com",
        None,
        "bk_1",
    )
    assert row.payment_method_types == ["card"]


async def test_empty_put_is_a_no_op(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    payment = await make_payment(db, user_id=1)
    before = payment.updated_at
    response = await client.put(url(payment.id), json={}, headers=auth(1))
    assert response.status_code == 200
    assert (await stored(db, payment.id)).updated_at == before  # type: ignore[union-attr]


async def test_amount_and_currency_change_while_pending(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, amount="10.00", currency="USD")
    response = await client.put(url(payment.id), json={"amount_total": "1500", "currency": "jpy"}, headers=auth(1))
    assert response.status_code == 200, response.text
    assert (response.json()["amount_total"], response.json()["currency"]) == ("1500", "JPY")
    row = await stored(db, payment.id)
    assert row is not None and (row.amount_total, row.currency) == (Decimal("1500"), "JPY")


@pytest.mark.parametrize("status", [S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CANCELED, S.REFUNDED])
@pytest.mark.parametrize("change", [{"amount_total": "11.00"}, {"currency": "EUR"}])
async def test_amount_and_currency_are_locked_after_pending(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, status: S, change: dict[str, str]
) -> None:
    payment = await make_payment(db, user_id=1, status=status, amount="10.00", currency="USD")
    assert_problem(await client.put(url(payment.id), json=change, headers=auth(1)), 409, "/immutable-field")
    row = await stored(db, payment.id)
    assert row is not None and (row.amount_total, row.currency) == (Decimal("10.00"), "USD")


async def test_resending_the_same_amount_after_pending_is_allowed(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, status=S.SUCCEEDED, amount="10.00", currency="USD")
    response = await client.put(
        url(payment.id), json={"amount_total": "10", "currency": "usd", "description": "x"}, headers=auth(1)
    )
    assert response.status_code == 200
    assert response.json()["description"] == "x"


@pytest.mark.parametrize(
    ("stored_payment", "change"),
    [
        ({"amount": "10.50", "currency": "USD"}, {"currency": "JPY"}),
        ({"amount": "10", "currency": "JPY"}, {"amount_total": "10.5"}),
        ({"amount": "10.00", "currency": "USD"}, {"amount_total": "10.001", "currency": "USD"}),
    ],
)
async def test_amount_precision_is_checked_against_the_resulting_currency(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    db: AsyncSession,
    stored_payment: dict[str, str],
    change: dict[str, str],
) -> None:
    payment = await make_payment(db, user_id=1, amount=stored_payment["amount"], currency=stored_payment["currency"])
    problem = assert_problem(await client.put(url(payment.id), json=change, headers=auth(1)), 422)
    # Same shape as every other 422: `errors` names the amount that does not fit the currency.
    assert [error["location"] for error in problem["errors"]] == ["body.amount_total"], problem
    row = await stored(db, payment.id)
    assert row is not None and row.currency == stored_payment["currency"]


async def test_gateway_ids_can_be_filled_in_once(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, payment_id=None, checkout_session_id="cs_1")
    response = await client.put(url(payment.id), json={"payment_id": "pi_later"}, headers=auth(1))
    assert response.status_code == 200
    assert response.json()["payment_id"] == "pi_later"
    assert (await stored(db, payment.id)).payment_id == "pi_later"  # type: ignore[union-attr]

    again = await client.put(url(payment.id), json={"payment_id": "pi_later"}, headers=auth(1))
    assert again.status_code == 200


@pytest.mark.parametrize(
    "change",
    [{"payment_id": "pi_other"}, {"payment_id": None}, {"checkout_session_id": "cs_other"}],
)
async def test_set_gateway_ids_never_change(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, change: dict[str, Any]
) -> None:
    payment = await make_payment(db, user_id=1, payment_id="pi_set", checkout_session_id="cs_set")
    assert_problem(await client.put(url(payment.id), json=change, headers=auth(1)), 409, "/immutable-field")
    row = await stored(db, payment.id)
    assert row is not None and (row.payment_id, row.checkout_session_id) == ("pi_set", "cs_set")


async def test_filling_in_a_gateway_id_taken_by_another_payment_is_409(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await make_payment(db, user_id=2, payment_id="pi_taken")
    payment = await make_payment(db, user_id=1, payment_id=None, checkout_session_id="cs_mine")
    response = await client.put(url(payment.id), json={"payment_id": "pi_taken", "description": "x"}, headers=auth(1))
    assert_problem(response, 409, "/duplicate-payment")
    row = await stored(db, payment.id)
    assert row is not None and (row.payment_id, row.description) == (None, None)


@pytest.mark.parametrize(
    "field",
    [
        {"payment_status": "succeeded"},
        {"user_id": 2},
        {"provider": "paypal"},
        {"created_at": "2026-01-01T00:00:00Z"},
        {"updated_at": "2026-01-01T00:00:00Z"},
        {"id": 5},
        {"nonsense": 1},
    ],
)
async def test_fields_that_cannot_change_here_are_422(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, field: dict[str, Any]
) -> None:
    payment = await make_payment(db, user_id=1)
    problem = assert_problem(await client.put(url(payment.id), json=field, headers=auth(1)), 422)
    assert error_locations(problem) == {f"body.{next(iter(field))}"}
    row = await stored(db, payment.id)
    assert row is not None and row.payment_status is S.PENDING and row.user_id == 1


@pytest.mark.parametrize(
    "change",
    [{"amount_total": None}, {"currency": None}, {"payment_method_types": None}, {"amount_total": "-1"}],
)
async def test_required_fields_cannot_be_nulled(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, change: dict[str, Any]
) -> None:
    payment = await make_payment(db, user_id=1)
    problem = assert_problem(await client.put(url(payment.id), json=change, headers=auth(1)), 422)
    assert error_locations(problem) == {f"body.{next(iter(change))}"}
    row = await stored(db, payment.id)
    assert row is not None and (row.version, row.amount_total, row.currency) == (1, payment.amount_total, "USD")


async def test_put_on_someone_elses_payment_is_404(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, description="mine")
    assert_problem(await client.put(url(payment.id), json={"description": "x"}, headers=auth(2)), 404)
    assert (await stored(db, payment.id)).description == "mine"  # type: ignore[union-attr]


async def test_put_on_a_missing_payment_is_404(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    assert_problem(await client.put(url(987654321), json={"description": "x"}, headers=auth(1)), 404)
