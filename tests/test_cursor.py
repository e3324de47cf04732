"""Keyset (cursor) paging and the optional total."""

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import Keyset, encode_cursor
from app.models import PaymentStatus
from tests.conftest import TokenFactory, make_payment, utc
from tests.helpers import assert_problem, error_locations

LIST = "/api/v1/payments/"
ADMIN_LIST = "/api/v1/payments/admin/all"


async def seed(db: AsyncSession, count: int, *, user_id: int = 1, same_time: bool = False) -> list[int]:
    """Payments oldest first; returns their ids newest first (the list order)."""
    ids = []
    for n in range(count):
        created = utc(2026, 3, 1) + (timedelta(0) if same_time else timedelta(minutes=n))
        ids.append((await make_payment(db, user_id=user_id, created_at=created)).id)
    return ids[::-1]  # ids grow with insertion, so this is newest first, ties broken by id


async def walk(client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any) -> list[list[int]]:
    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["id"] for item in body["items"]])
        if cursor is not None:
            assert (body["page"], body["total"], body["pages"]) == (None, None, None)
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50


async def test_walking_the_cursor_visits_every_row_once_in_order(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    expected = await seed(db, 45)
    await seed(db, 3, user_id=2)
    pages = await walk(client, LIST, auth(1), size=20)
    assert [len(p) for p in pages] == [20, 20, 5]
    assert [i for p in pages for i in p] == expected


async def test_rows_with_the_same_created_at_are_split_by_id(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    expected = await seed(db, 7, same_time=True)
    pages = await walk(client, LIST, auth(1), size=3)
    assert [i for p in pages for i in p] == expected
    assert [len(p) for p in pages] == [3, 3, 1]


async def test_exactly_full_last_page_has_no_next_cursor(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await seed(db, 4)
    pages = await walk(client, LIST, auth(1), size=2)
    assert [len(p) for p in pages] == [2, 2]


async def test_offset_page_offers_a_cursor_to_the_same_next_page(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await seed(db, 10)
    first = (await client.get(LIST, params={"size": 4}, headers=auth(1))).json()
    by_offset = (await client.get(LIST, params={"size": 4, "page": 2}, headers=auth(1))).json()
    by_cursor = (await client.get(LIST, params={"size": 4, "cursor": first["next_cursor"]}, headers=auth(1))).json()
    assert [i["id"] for i in by_cursor["items"]] == [i["id"] for i in by_offset["items"]]
    assert by_offset["next_cursor"] == by_cursor["next_cursor"]


async def test_new_payments_do_not_shift_a_cursor_walk(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    expected = await seed(db, 6)
    first = (await client.get(LIST, params={"size": 3}, headers=auth(1))).json()
    await make_payment(db, user_id=1, created_at=utc(2026, 12, 1))  # newer than everything
    second = (await client.get(LIST, params={"size": 3, "cursor": first["next_cursor"]}, headers=auth(1))).json()
    assert [i["id"] for i in first["items"] + second["items"]] == expected


async def test_cursor_keeps_the_filters(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    succeeded: list[int] = []
    for n in range(6):
        status = PaymentStatus.SUCCEEDED if n % 2 else PaymentStatus.FAILED
        payment = await make_payment(db, user_id=1, status=status, created_at=utc(2026, 3, 1) + timedelta(minutes=n))
        if status is PaymentStatus.SUCCEEDED:
            succeeded.insert(0, payment.id)
    pages = await walk(client, LIST, auth(1), size=2, payment_status="succeeded")
    assert [i for p in pages for i in p] == succeeded


async def test_cursor_can_ask_for_the_total(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    await seed(db, 5)
    first = (await client.get(LIST, params={"size": 2}, headers=auth(1))).json()
    response = await client.get(
        LIST, params={"size": 2, "cursor": first["next_cursor"], "include_total": "true"}, headers=auth(1)
    )
    body = response.json()
    assert (body["total"], body["pages"], body["page"]) == (5, 3, None)


async def test_offset_paging_can_skip_the_count(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await seed(db, 3)
    body = (await client.get(LIST, params={"size": 2, "include_total": "false"}, headers=auth(1))).json()
    assert (body["total"], body["pages"], body["page"], len(body["items"])) == (None, None, 1, 2)
    assert body["next_cursor"] is not None


async def test_admin_list_pages_by_cursor_over_every_user(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    mine = await seed(db, 3, user_id=1)
    theirs = await seed(db, 3, user_id=2)
    pages = await walk(client, ADMIN_LIST, auth(9, admin=True), size=4)
    assert sorted(i for p in pages for i in p) == sorted(mine + theirs)
    assert [len(p) for p in pages] == [4, 2]


async def test_a_cursor_only_moves_within_the_callers_rows(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    theirs = await make_payment(db, user_id=2, created_at=utc(2026, 1, 1))
    forged = encode_cursor(Keyset(created_at=utc(2030, 1, 1), id=2**62))
    body = (await client.get(LIST, params={"cursor": forged}, headers=auth(1))).json()
    assert body["items"] == []
    assert theirs.id not in [i["id"] for i in body["items"]]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "W10",  # base64 of []
        "eyJhIjoxfQ",  # base64 of {"a":1}
        encode_cursor(Keyset(created_at=utc(2026, 1, 1), id=0)),
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwxXQ",  # a naive timestamp
        "WyI5OTk5LTEyLTMxVDIzOjU5OjU5LTAxOjAwIiwxXQ",  # 9999-12-31T23:59:59-01:00: past year 9999 in UTC
        "x" * 201,
    ],
)
async def test_a_bad_cursor_is_422(client: httpx.AsyncClient, auth: TokenFactory, cursor: str) -> None:
    problem = assert_problem(await client.get(LIST, params={"cursor": cursor}, headers=auth(1)), 422)
    assert error_locations(problem) == {"query.cursor"}


async def test_cursor_and_page_together_are_422(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await seed(db, 3)
    first = (await client.get(LIST, params={"size": 1}, headers=auth(1))).json()
    response = await client.get(LIST, params={"cursor": first["next_cursor"], "page": 2}, headers=auth(1))
    assert "page or cursor" in assert_problem(response, 422)["errors"][0]["message"]
