"""Listing payments: the caller's own (GET /payments/) and everyone's for admins (GET /payments/admin/all)."""

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import PaymentProvider, PaymentStatus
from tests.conftest import TokenFactory, make_payment, utc
from tests.helpers import assert_problem, error_locations

LIST = "/api/v1/payments/"
ADMIN_LIST = "/api/v1/payments/admin/all"
BOTH_LISTS = pytest.mark.parametrize("path", [LIST, ADMIN_LIST])
ENVELOPE_KEYS = {"items", "total", "page", "size", "pages", "next_cursor"}
ONE_MICROSECOND = timedelta(microseconds=1)


def summary(response: httpx.Response) -> dict[str, Any]:
    """The page with its items reduced to their ids, in order."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == ENVELOPE_KEYS
    ids = [item["id"] for item in body.pop("items")]
    next_cursor = body.pop("next_cursor")
    return {"ids": ids, **body, "has_next": next_cursor is not None}


def page(ids: list[int], *, total: int, page: int = 1, size: int = 20, pages: int) -> dict[str, Any]:
    return {"ids": ids, "total": total, "page": page, "size": size, "pages": pages, "has_next": page < pages}


def headers_for(path: str, auth: TokenFactory, user_id: int = 1) -> dict[str, str]:
    """The caller's own token for the own list; an admin token (another user) for the admin list."""
    return auth(user_id) if path == LIST else auth(900, admin=True)


async def payments_at(db: AsyncSession, count: int, *, user_id: int = 1, start: datetime | None = None) -> list[int]:
    """`count` payments one minute apart, oldest first; returns their ids in that order."""
    start = start or utc(2026, 6, 1)
    return [
        (await make_payment(db, user_id=user_id, created_at=start + timedelta(minutes=minute))).id
        for minute in range(count)
    ]


# --- contents and ordering -------------------------------------------------------------------------


async def test_list_has_the_caller_s_payments_newest_first_with_their_full_shape(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    older = await make_payment(
        db,
        user_id=7,
        status=PaymentStatus.SUCCEEDED,
        amount="1500",
        currency="JPY",
        provider=PaymentProvider.SQUARE,
        created_at=utc(2026, 2, 1, 10, 0, 0),
        payment_id="pi_list_old",
        booking_id="bk_7",
        property_id="prop_7",
    )
    newer = await make_payment(
        db,
        user_id=7,
        amount="1.25",
        currency="KWD",
        created_at=utc(2026, 2, 2, 10, 0, 0),
        payment_id=None,
        checkout_session_id="cs_list_new",
        payment_method_id="pm_1",
        payment_method_types=["card"],
        customer_id="cus_7",
        customer_email="seven@example.com",
        description="Deposit",
    )
    await make_payment(db, user_id=8, created_at=utc(2026, 2, 3))
    response = await client.get(LIST, headers=auth(7))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "items": [
            {
                "id": newer.id,
                "payment_id": None,
                "checkout_session_id": "cs_list_new",
                "payment_method_id": "pm_1",
                "payment_method_types": ["card"],
                "payment_status": "pending",
                "provider": "stripe",
                "currency": "KWD",
                "amount_total": "1.250",
                "amount_refunded": "0.000",
                "amount_refundable": "1.250",
                "customer_id": "cus_7",
                "customer_email": "seven@example.com",
                "booking_id": None,
                "property_id": None,
                "user_id": 7,
                "description": "Deposit",
                "metadata": {},
                "version": 1,
                "created_at": "2026-02-02T10:00:00Z",
                "updated_at": "2026-02-02T10:00:00Z",
            },
            {
                "id": older.id,
                "payment_id": "pi_list_old",
                "checkout_session_id": None,
                "payment_method_id": None,
                "payment_method_types": [],
                "payment_status": "succeeded",
                "provider": "square",
                "currency": "JPY",
                "amount_total": "1500",
                "amount_refunded": "0",
                "amount_refundable": "1500",
                "customer_id": None,
                "customer_email": None,
                "booking_id": "bk_7",
                "property_id": "prop_7",
                "user_id": 7,
                "description": None,
                "metadata": {},
                "version": 1,
                "created_at": "2026-02-01T10:00:00Z",
                "updated_at": "2026-02-01T10:00:00Z",
            },
        ],
        "total": 2,
        "page": 1,
        "size": 20,
        "pages": 1,
        "next_cursor": None,
    }


async def test_list_items_equal_the_single_payment_reads(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    first = await make_payment(db, user_id=1, amount="100", currency="USD", booking_id="bk_1")
    second = await make_payment(db, user_id=2, amount="0.001", currency="BHD", property_id="prop_2")
    singles = [
        (await client.get(f"/api/v1/payments/{p.id}", headers=auth(900, admin=True))).json() for p in (second, first)
    ]
    own = await client.get(LIST, headers=auth(1))
    everyone = await client.get(ADMIN_LIST, headers=auth(900, admin=True))
    assert own.json()["items"] == singles[1:]
    assert everyone.json()["items"] == singles
    assert [item["amount_total"] for item in everyone.json()["items"]] == ["0.001", "100.00"]


async def test_empty_list(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    await make_payment(db, user_id=2)
    response = await client.get(LIST, headers=auth(1))
    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 0, "page": 1, "size": 20, "pages": 0, "next_cursor": None}


async def test_admin_s_own_list_has_only_the_admin_s_payments(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await make_payment(db, user_id=1)
    mine = await make_payment(db, user_id=900)
    assert summary(await client.get(LIST, headers=auth(900, admin=True))) == page([mine.id], total=1, pages=1)


@BOTH_LISTS
async def test_ties_on_created_at_are_broken_by_id_descending(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, path: str
) -> None:
    moment = utc(2026, 4, 1, 9)
    before = await make_payment(db, user_id=1, created_at=moment - ONE_MICROSECOND)
    first = await make_payment(db, user_id=1, created_at=moment)
    after = await make_payment(db, user_id=1, created_at=moment + ONE_MICROSECOND)
    second = await make_payment(db, user_id=1, created_at=moment)
    third = await make_payment(db, user_id=1, created_at=moment)
    assert first.id < second.id < third.id
    headers = headers_for(path, auth)
    order = [after.id, third.id, second.id, first.id, before.id]
    assert summary(await client.get(path, headers=headers)) == page(order, total=5, pages=1)
    # The tie-break keeps pages stable: no row is repeated or skipped across page boundaries.
    pages = [summary(await client.get(path, params={"size": 2, "page": n}, headers=headers)) for n in (1, 2, 3)]
    assert pages == [
        page(order[0:2], total=5, page=1, size=2, pages=3),
        page(order[2:4], total=5, page=2, size=2, pages=3),
        page(order[4:], total=5, page=3, size=2, pages=3),
    ]


# --- pagination -------------------------------------------------------------------------------------


@BOTH_LISTS
async def test_pages_with_a_partial_last_page_and_past_the_end(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, path: str
) -> None:
    oldest_first = await payments_at(db, 5)
    p1, p2, p3, p4, p5 = oldest_first
    headers = headers_for(path, auth)

    async def get(page_number: int) -> dict[str, Any]:
        return summary(await client.get(path, params={"page": page_number, "size": 2}, headers=headers))

    assert await get(1) == page([p5, p4], total=5, page=1, size=2, pages=3)
    assert await get(2) == page([p3, p2], total=5, page=2, size=2, pages=3)
    assert await get(3) == page([p1], total=5, page=3, size=2, pages=3)
    assert await get(4) == page([], total=5, page=4, size=2, pages=3)
    assert await get(1_000_000) == page([], total=5, page=1_000_000, size=2, pages=3)


@pytest.mark.parametrize(
    ("size", "pages"),
    [(1, 4), (2, 2), (3, 2), (4, 1), (5, 1), (100, 1)],
)
async def test_pages_is_the_ceiling_of_total_over_size(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, size: int, pages: int
) -> None:
    newest_first = list(reversed(await payments_at(db, 4)))
    last = summary(await client.get(LIST, params={"size": size, "page": pages}, headers=auth(1)))
    first_on_last_page = (pages - 1) * size
    assert last == page(newest_first[first_on_last_page:], total=4, page=pages, size=size, pages=pages)
    past = summary(await client.get(LIST, params={"size": size, "page": pages + 1}, headers=auth(1)))
    assert past == page([], total=4, page=pages + 1, size=size, pages=pages)


async def test_defaults_are_page_1_and_size_20(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    newest_first = list(reversed(await payments_at(db, 21)))
    assert summary(await client.get(LIST, headers=auth(1))) == page(newest_first[:20], total=21, pages=2)
    second = summary(await client.get(LIST, params={"page": 2}, headers=auth(1)))
    assert second == page(newest_first[20:], total=21, page=2, pages=2)


@BOTH_LISTS
async def test_size_100_is_the_largest_page(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, path: str
) -> None:
    newest_first = list(reversed(await payments_at(db, 101)))
    headers = headers_for(path, auth)
    first = summary(await client.get(path, params={"size": 100}, headers=headers))
    assert first == page(newest_first[:100], total=101, size=100, pages=2)
    second = summary(await client.get(path, params={"size": 100, "page": 2}, headers=headers))
    assert second == page(newest_first[100:], total=101, page=2, size=100, pages=2)


# --- validation -------------------------------------------------------------------------------------


@BOTH_LISTS
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("size", "0"),
        ("size", "101"),
        ("size", "-1"),
        ("size", "ten"),
        ("size", "1.5"),
        ("page", "0"),
        ("page", "-1"),
        ("page", "two"),
        ("payment_status", "paid"),
        ("provider", "visa"),
        ("currency", "XXX"),
        ("currency", "US"),
        ("currency", "USDD"),
        ("booking_id", "b" * 65),
        ("property_id", "p" * 65),
        ("created_from", "yesterday"),
        ("created_to", "2026-02-30T00:00:00Z"),
    ],
)
async def test_invalid_query_value_is_422_naming_the_field(
    client: httpx.AsyncClient, auth: TokenFactory, path: str, name: str, value: str
) -> None:
    response = await client.get(path, params={name: value}, headers=headers_for(path, auth))
    problem = assert_problem(response, 422, "/validation-error")
    assert error_locations(problem) == {f"query.{name}"}


@pytest.mark.parametrize("value", ["abc", str(2**63), str(-(2**63) - 1)])
async def test_admin_user_id_filter_must_be_a_bigint(client: httpx.AsyncClient, auth: TokenFactory, value: str) -> None:
    response = await client.get(ADMIN_LIST, params={"user_id": value}, headers=auth(900, admin=True))
    problem = assert_problem(response, 422, "/validation-error")
    assert error_locations(problem) == {"query.user_id"}


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (LIST, "foo"),
        (LIST, "user_id"),
        (LIST, "status"),
        (LIST, "sort"),
        (LIST, "Page"),
        (ADMIN_LIST, "foo"),
        (ADMIN_LIST, "owner_id"),
    ],
)
async def test_unknown_query_parameter_is_422(
    client: httpx.AsyncClient, auth: TokenFactory, path: str, name: str
) -> None:
    response = await client.get(path, params={name: "1"}, headers=headers_for(path, auth))
    problem = assert_problem(response, 422, "/validation-error")
    assert error_locations(problem) == {f"query.{name}"}
    assert [error["type"] for error in problem["errors"]] == ["extra_forbidden"]


async def test_several_invalid_parameters_are_all_reported(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    response = await client.get(LIST, params={"size": "0", "page": "0", "bogus": "x"}, headers=auth(1))
    problem = assert_problem(response, 422, "/validation-error")
    assert error_locations(problem) == {"query.size", "query.page", "query.bogus"}


# --- filters ----------------------------------------------------------------------------------------


async def filter_dataset(db: AsyncSession) -> dict[str, int]:
    """Four payments of user 1 (a oldest .. d newest) and one of user 2 (e, newest of all)."""
    rows = {
        "a": await make_payment(
            db,
            user_id=1,
            status=PaymentStatus.SUCCEEDED,
            provider=PaymentProvider.STRIPE,
            currency="USD",
            amount="10.00",
            booking_id="bk_1",
            property_id="prop_1",
            created_at=utc(2026, 3, 1),
        ),
        "b": await make_payment(
            db,
            user_id=1,
            status=PaymentStatus.PENDING,
            provider=PaymentProvider.PAYPAL,
            currency="EUR",
            amount="20.00",
            booking_id="bk_1",
            property_id="prop_2",
            created_at=utc(2026, 3, 2),
        ),
        "c": await make_payment(
            db,
            user_id=1,
            status=PaymentStatus.SUCCEEDED,
            provider=PaymentProvider.PAYPAL,
            currency="JPY",
            amount="1500",
            booking_id="bk_2",
            property_id="prop_1",
            created_at=utc(2026, 3, 3),
        ),
        "d": await make_payment(
            db,
            user_id=1,
            status=PaymentStatus.FAILED,
            provider=PaymentProvider.SQUARE,
            currency="USD",
            amount="30.00",
            created_at=utc(2026, 3, 4),
        ),
        "e": await make_payment(
            db,
            user_id=2,
            status=PaymentStatus.SUCCEEDED,
            provider=PaymentProvider.STRIPE,
            currency="USD",
            amount="40.00",
            booking_id="bk_1",
            property_id="prop_1",
            created_at=utc(2026, 3, 5),
        ),
    }
    return {name: payment.id for name, payment in rows.items()}


FILTER_CASES = [
    # (query, user 1's matches newest first, every user's matches newest first)
    ({}, "dcba", "edcba"),
    ({"payment_status": "succeeded"}, "ca", "eca"),
    ({"payment_status": "pending"}, "b", "b"),
    ({"payment_status": "failed"}, "d", "d"),
    ({"payment_status": "refunded"}, "", ""),
    ({"provider": "stripe"}, "a", "ea"),
    ({"provider": "paypal"}, "cb", "cb"),
    ({"provider": "square"}, "d", "d"),
    ({"provider": "razorpay"}, "", ""),
    ({"currency": "USD"}, "da", "eda"),
    ({"currency": "usd"}, "da", "eda"),
    ({"currency": "uSd"}, "da", "eda"),
    ({"currency": "jpy"}, "c", "c"),
    ({"currency": "GBP"}, "", ""),
    ({"booking_id": "bk_1"}, "ba", "eba"),
    ({"booking_id": "bk_2"}, "c", "c"),
    ({"booking_id": "BK_1"}, "", ""),
    ({"booking_id": "bk"}, "", ""),
    ({"property_id": "prop_1"}, "ca", "eca"),
    ({"property_id": "prop_2"}, "b", "b"),
    ({"property_id": "prop_3"}, "", ""),
    ({"created_from": "2026-03-02T00:00:00Z"}, "dcb", "edcb"),
    ({"created_to": "2026-03-02T00:00:00Z"}, "ba", "ba"),
    # combinations
    ({"payment_status": "succeeded", "provider": "paypal"}, "c", "c"),
    ({"payment_status": "succeeded", "currency": "usd"}, "a", "ea"),
    ({"provider": "paypal", "booking_id": "bk_1"}, "b", "b"),
    ({"booking_id": "bk_1", "property_id": "prop_1"}, "a", "ea"),
    ({"payment_status": "pending", "currency": "JPY"}, "", ""),
    ({"currency": "usd", "created_to": "2026-03-03T00:00:00Z"}, "a", "a"),
    ({"provider": "paypal", "created_from": "2026-03-03T00:00:00Z"}, "c", "c"),
    ({"created_from": "2026-03-02T00:00:00Z", "created_to": "2026-03-04T00:00:00Z"}, "dcb", "dcb"),
    (
        {
            "payment_status": "succeeded",
            "provider": "paypal",
            "currency": "Jpy",
            "booking_id": "bk_2",
            "property_id": "prop_1",
            "created_from": "2026-03-03T00:00:00Z",
            "created_to": "2026-03-03T00:00:00Z",
        },
        "c",
        "c",
    ),
]


@pytest.mark.parametrize(("query", "own", "everyone"), FILTER_CASES)
async def test_filters_on_the_own_list(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    db: AsyncSession,
    query: dict[str, str],
    own: str,
    everyone: str,
) -> None:
    ids = await filter_dataset(db)
    expected = [ids[name] for name in own]
    response = await client.get(LIST, params=query, headers=auth(1))
    assert summary(response) == page(expected, total=len(expected), pages=1 if expected else 0)


@pytest.mark.parametrize(("query", "own", "everyone"), FILTER_CASES)
async def test_filters_on_the_admin_list(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    db: AsyncSession,
    query: dict[str, str],
    own: str,
    everyone: str,
) -> None:
    ids = await filter_dataset(db)
    expected = [ids[name] for name in everyone]
    response = await client.get(ADMIN_LIST, params=query, headers=auth(900, admin=True))
    assert summary(response) == page(expected, total=len(expected), pages=1 if expected else 0)
    only_user_1 = [ids[name] for name in own]
    response = await client.get(ADMIN_LIST, params={**query, "user_id": "1"}, headers=auth(900, admin=True))
    assert summary(response) == page(only_user_1, total=len(only_user_1), pages=1 if only_user_1 else 0)


async def test_total_counts_the_filtered_rows_not_the_page(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    ids = await filter_dataset(db)
    response = await client.get(LIST, params={"currency": "usd", "size": 1, "page": 2}, headers=auth(1))
    assert summary(response) == page([ids["a"]], total=2, page=2, size=1, pages=2)
    response = await client.get(
        ADMIN_LIST, params={"payment_status": "succeeded", "size": 2, "page": 2}, headers=auth(900, admin=True)
    )
    assert summary(response) == page([ids["a"]], total=3, page=2, size=2, pages=2)


async def test_filtering_on_someone_else_s_references_reveals_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await make_payment(db, user_id=2, booking_id="bk_secret", property_id="prop_secret")
    for query in ({"booking_id": "bk_secret"}, {"property_id": "prop_secret"}):
        assert summary(await client.get(LIST, params=query, headers=auth(1))) == page([], total=0, pages=0)


@pytest.mark.parametrize("user_id", [1, 2, 3, 0, -5])
async def test_admin_user_id_filter(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, user_id: int
) -> None:
    ids = await filter_dataset(db)
    negative = await make_payment(db, user_id=-5, created_at=utc(2026, 1, 1))
    expected = {1: [ids[n] for n in "dcba"], 2: [ids["e"]], 3: [], 0: [], -5: [negative.id]}[user_id]
    response = await client.get(ADMIN_LIST, params={"user_id": user_id}, headers=auth(900, admin=True))
    assert summary(response) == page(expected, total=len(expected), pages=1 if expected else 0)


# --- created_from / created_to ----------------------------------------------------------------------

RANGE_FROM = utc(2026, 3, 1)
RANGE_MIDDLE = utc(2026, 3, 15, 12)
RANGE_TO = utc(2026, 3, 31, 23, 59, 59)


async def range_dataset(db: AsyncSession) -> dict[str, int]:
    """Payments one microsecond outside, exactly on, and inside the range [RANGE_FROM, RANGE_TO]."""
    moments = {
        "before": RANGE_FROM - ONE_MICROSECOND,
        "from": RANGE_FROM,
        "middle": RANGE_MIDDLE,
        "to": RANGE_TO,
        "after": RANGE_TO + ONE_MICROSECOND,
    }
    return {name: (await make_payment(db, user_id=1, created_at=moment)).id for name, moment in moments.items()}


@BOTH_LISTS
@pytest.mark.parametrize(
    ("created_from", "created_to"),
    [
        ("2026-03-01T00:00:00Z", "2026-03-31T23:59:59Z"),
        ("2026-03-01T00:00:00+00:00", "2026-03-31T23:59:59+00:00"),
        ("2026-03-01T00:00:00", "2026-03-31T23:59:59"),
        ("2026-03-01T00:00:00.000000", "2026-03-31T23:59:59.000000Z"),
        ("2026-03-01T02:00:00+02:00", "2026-03-31T18:59:59-05:00"),
        ("2026-02-28T23:30:00-00:30", "2026-04-01T05:29:59+05:30"),
    ],
)
async def test_range_includes_both_boundaries(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    db: AsyncSession,
    path: str,
    created_from: str,
    created_to: str,
) -> None:
    ids = await range_dataset(db)
    params = {"created_from": created_from, "created_to": created_to}
    response = await client.get(path, params=params, headers=headers_for(path, auth))
    assert summary(response) == page([ids["to"], ids["middle"], ids["from"]], total=3, pages=1)


async def test_range_boundaries_are_exact_to_the_microsecond(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    ids = await range_dataset(db)
    params = {"created_from": "2026-03-01T00:00:00.000001Z", "created_to": "2026-03-31T23:59:58.999999Z"}
    assert summary(await client.get(LIST, params=params, headers=auth(1))) == page([ids["middle"]], total=1, pages=1)


async def test_open_ended_ranges(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    ids = await range_dataset(db)
    since = summary(await client.get(LIST, params={"created_from": "2026-03-01T00:00:00Z"}, headers=auth(1)))
    assert since == page([ids[n] for n in ("after", "to", "middle", "from")], total=4, pages=1)
    until = summary(await client.get(LIST, params={"created_to": "2026-03-31T23:59:59Z"}, headers=auth(1)))
    assert until == page([ids[n] for n in ("to", "middle", "from", "before")], total=4, pages=1)


async def test_a_range_of_one_instant_finds_the_payment_at_that_instant(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    ids = await range_dataset(db)
    instant = "2026-03-15T12:00:00Z"
    response = await client.get(LIST, params={"created_from": instant, "created_to": instant}, headers=auth(1))
    assert summary(response) == page([ids["middle"]], total=1, pages=1)


@BOTH_LISTS
@pytest.mark.parametrize(
    ("created_from", "created_to"),
    [
        ("2026-03-02T00:00:00Z", "2026-03-01T00:00:00Z"),
        ("2026-03-01T00:00:00.000001Z", "2026-03-01T00:00:00Z"),
        ("2026-03-01T00:00:00", "2026-03-01T01:59:59+02:00"),
    ],
)
async def test_from_after_to_is_422(
    client: httpx.AsyncClient, auth: TokenFactory, path: str, created_from: str, created_to: str
) -> None:
    params = {"created_from": created_from, "created_to": created_to}
    response = await client.get(path, params=params, headers=headers_for(path, auth))
    problem = assert_problem(response, 422, "/validation-error")
    assert [error["message"] for error in problem["errors"]] == [
        "Value error, created_from must not be after created_to"
    ]


@pytest.fixture
async def unraised_client(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """Like `client` (whose set-up it reuses), but an unhandled error comes back as the 500 a caller would get."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as unraised:
        yield unraised


@pytest.mark.parametrize(
    ("name", "value"),
    [("created_to", "9999-12-31T23:59:59-01:00"), ("created_from", "0001-01-01T00:00:00+01:00")],
)
async def test_extreme_offsets_are_not_a_server_error(
    unraised_client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, name: str, value: str
) -> None:
    await make_payment(db, user_id=1)
    response = await unraised_client.get(LIST, params={name: value}, headers=auth(1))
    # The instant is outside years 1-9999 once in UTC, which PostgreSQL cannot compare against.
    assert error_locations(assert_problem(response, 422, "/validation-error")) == {f"query.{name}"}


# --- access -----------------------------------------------------------------------------------------


async def test_admin_list_is_forbidden_to_non_admins(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await make_payment(db, user_id=1)
    response = await client.get(ADMIN_LIST, headers=auth(1))
    problem = assert_problem(response, 403, "/forbidden")
    assert problem == {
        "type": "/problems/forbidden",
        "title": "Forbidden",
        "status": 403,
        "detail": "This endpoint is for admins only",
    }
    assert "items" not in response.text


@BOTH_LISTS
async def test_lists_need_a_bearer_token(client: httpx.AsyncClient, path: str) -> None:
    missing = await client.get(path)
    assert_problem(missing, 401, "/not-authenticated")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_problem(await client.get(path, headers={"Authorization": "Bearer not-a-jwt"}), 401, "/not-authenticated")


# --- metadata filter -----------------------------------------------------------------------------


@BOTH_LISTS
async def test_metadata_filter_matches_key_and_value(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, path: str
) -> None:
    wanted = await make_payment(db, user_id=1, metadata_={"order": "A-1", "channel": "web"})
    await make_payment(db, user_id=1, metadata_={"order": "A-2", "channel": "web"})
    await make_payment(db, user_id=1)
    response = await client.get(path, params={"metadata[order]": "A-1"}, headers=headers_for(path, auth))
    assert [item["id"] for item in response.json()["items"]] == [wanted.id]
    assert response.json()["total"] == 1
    both = await client.get(
        path, params={"metadata[order]": "A-1", "metadata[channel]": "web"}, headers=headers_for(path, auth)
    )
    assert [item["id"] for item in both.json()["items"]] == [wanted.id]
    none = await client.get(path, params={"metadata[order]": "A-3"}, headers=headers_for(path, auth))
    assert none.json()["items"] == []


async def test_metadata_filter_stays_within_the_callers_payments(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await make_payment(db, user_id=2, metadata_={"order": "A-1"})
    response = await client.get(LIST, params={"metadata[order]": "A-1"}, headers=auth(1))
    assert response.json()["items"] == []


@pytest.mark.parametrize("name", ["metadata[]", "metadata[" + "k" * 41 + "]", "metadata", "metadata[a][b]"])
async def test_a_malformed_metadata_parameter_is_422(client: httpx.AsyncClient, auth: TokenFactory, name: str) -> None:
    assert_problem(await client.get(LIST, params={name: "x"}, headers=auth(1)), 422)


async def test_a_metadata_value_over_500_characters_is_422(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    assert_problem(await client.get(LIST, params={"metadata[order]": "v" * 501}, headers=auth(1)), 422)
