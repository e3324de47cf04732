"""Versions and ETags, If-Match, the status history and X-Request-ID (single process)."""

from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import PaymentStatus, PaymentStatusHistory
from tests.conftest import TokenFactory, make_payment
from tests.helpers import assert_problem, error_locations, payment_count, stored

PAYMENTS = "/api/v1/payments/"


async def history_rows(db: AsyncSession, payment_id: int) -> list[tuple[Any, ...]]:
    statement = (
        select(PaymentStatusHistory)
        .where(PaymentStatusHistory.payment_id == payment_id)
        .order_by(PaymentStatusHistory.id)
    )
    rows = await db.scalars(statement)
    return [(row.from_status, row.to_status, row.actor, row.request_id) for row in rows]


async def test_every_single_payment_response_carries_its_etag(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    created = await client.post(
        PAYMENTS,
        json={"payment_id": "pi_e", "provider": "paypal", "currency": "EUR", "amount_total": "5"},
        headers=auth(1),
    )
    assert created.headers["etag"] == '"1"'
    payment_id = created.json()["id"]
    assert (await client.get(f"{PAYMENTS}{payment_id}", headers=auth(1))).headers["etag"] == '"1"'
    by_gateway = await client.get(f"{PAYMENTS}payment-gateway/pi_e", headers=auth(1))
    assert by_gateway.headers["etag"] == '"1"'

    put = await client.put(f"{PAYMENTS}{payment_id}", json={"description": "a"}, headers=auth(1))
    assert (put.headers["etag"], put.json()["version"]) == ('"2"', 2)
    patch = await client.patch(
        f"{PAYMENTS}{payment_id}/status", json={"payment_status": "failed"}, headers=auth(1, service=True)
    )
    assert patch.headers["etag"] == '"3"'
    delete = await client.delete(f"{PAYMENTS}{payment_id}", headers=auth(1, service=True))
    assert (delete.headers["etag"], delete.json()["version"]) == ('"4"', 4)
    assert (await stored(db, payment_id)).version == 4  # type: ignore[union-attr]


async def test_no_op_changes_do_not_bump_the_version(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, description="same")
    url = f"{PAYMENTS}{payment.id}"
    assert (
        await client.patch(f"{url}/status", json={"payment_status": "pending"}, headers=auth(1, service=True))
    ).headers["etag"] == '"1"'
    assert (await client.put(url, json={"description": "same"}, headers=auth(1))).headers["etag"] == '"1"'
    assert (await stored(db, payment.id)).version == 1  # type: ignore[union-attr]
    assert await history_rows(db, payment.id) == []


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
async def test_stale_if_match_is_412_and_changes_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, method: str
) -> None:
    payment = await make_payment(db, user_id=1, description="before")
    await client.put(f"{PAYMENTS}{payment.id}", json={"description": "v2"}, headers=auth(1))
    headers = {**auth(1, service=method == "patch"), "If-Match": '"1"'}  # users only cancel
    url, payload = {
        "put": (f"{PAYMENTS}{payment.id}", {"description": "v3"}),
        "patch": (f"{PAYMENTS}{payment.id}/status", {"payment_status": "processing"}),
        "delete": (f"{PAYMENTS}{payment.id}", None),
    }[method]
    response = await client.request(method.upper(), url, json=payload, headers=headers)
    problem = assert_problem(response, 412, "/precondition-failed")
    assert '"2"' in problem["detail"]
    row = await stored(db, payment.id)
    assert row is not None and (row.version, row.description, row.payment_status) == (2, "v2", PaymentStatus.PENDING)


@pytest.mark.parametrize("if_match", ['"1"', "1", 'W/"9", "1"', "*"])
async def test_current_if_match_lets_the_change_through(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, if_match: str
) -> None:
    payment = await make_payment(db, user_id=1)
    response = await client.patch(
        f"{PAYMENTS}{payment.id}/status",
        json={"payment_status": "processing"},
        headers={**auth(1, service=True), "If-Match": if_match},
    )
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'


async def test_unparsable_if_match_never_matches(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1)
    response = await client.put(
        f"{PAYMENTS}{payment.id}", json={"description": "x"}, headers={**auth(1), "If-Match": "garbage"}
    )
    assert_problem(response, 412, "/precondition-failed")
    row = await stored(db, payment.id)
    assert row is not None and (row.version, row.description) == (payment.version, payment.description)


async def test_if_match_on_someone_elses_payment_is_still_404(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1)
    headers = {**auth(2), "If-Match": '"7"'}
    assert_problem(await client.delete(f"{PAYMENTS}{payment.id}", headers=headers), 404)


async def test_history_records_creation_and_each_move_with_actor_and_request_id(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    created = await client.post(
        PAYMENTS,
        json={"payment_id": "pi_h", "provider": "stripe", "currency": "USD", "amount_total": "1"},
        headers={**auth(5), "X-Request-ID": "req-create"},
    )
    assert created.headers["x-request-id"] == "req-create"
    payment_id = created.json()["id"]
    url = f"{PAYMENTS}{payment_id}"
    await client.patch(
        f"{url}/status", json={"payment_status": "processing"}, headers={**auth(6, service=True), "X-Request-ID": "r2"}
    )
    await client.patch(f"{url}/status", json={"payment_status": "processing"}, headers=auth(6, service=True))  # no-op
    await client.patch(f"{url}/status", json={"payment_status": "refunded"}, headers=auth(6, service=True))  # refused
    await client.patch(f"{url}/status", json={"payment_status": "succeeded"}, headers=auth(5))  # forbidden
    await client.patch(f"{url}/status", json={"payment_status": "succeeded"}, headers={**auth(9, admin=True)})

    response = await client.get(f"{url}/history", headers=auth(5))
    assert response.status_code == 200
    entries = response.json()
    assert [(e["from_status"], e["to_status"], e["actor"]) for e in entries] == [
        (None, "pending", "user:5"),
        ("pending", "processing", "service:6"),
        ("processing", "succeeded", "admin:9"),
    ]
    assert [e["request_id"] for e in entries[:2]] == ["req-create", "r2"]
    assert entries[2]["request_id"]  # generated when the caller sent none
    assert all(e["payment_id"] == payment_id for e in entries)
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)
    assert len(await history_rows(db, payment_id)) == 3


async def test_history_is_for_the_owner_or_an_admin(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1)
    assert_problem(await client.get(f"{PAYMENTS}{payment.id}/history", headers=auth(2)), 404)
    assert_problem(await client.get(f"{PAYMENTS}999999999/history", headers=auth(1)), 404)
    assert (await client.get(f"{PAYMENTS}{payment.id}/history", headers=auth(3, admin=True))).json() == []


async def test_history_cannot_be_updated_or_deleted(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    created = await client.post(
        PAYMENTS,
        json={"payment_id": "pi_ao", "provider": "stripe", "currency": "USD", "amount_total": "1"},
        headers=auth(1),
    )
    assert created.status_code == 201
    for statement in ("UPDATE payment_status_history SET actor = 'x'", "DELETE FROM payment_status_history"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.begin_nested():
                await db.execute(text(statement))


@pytest.mark.parametrize("request_id", ["", "x" * 129, "has space"])
async def test_an_unusable_request_id_is_replaced(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get("/health", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] not in ("", request_id)
    assert len(response.headers["x-request-id"]) == 32


async def test_request_id_is_echoed_on_errors_too(client: httpx.AsyncClient) -> None:
    response = await client.get(PAYMENTS, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "abc-123"


async def test_metadata_is_stored_and_merged_like_stripe(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    created = await client.post(
        PAYMENTS,
        json={
            "payment_id": "pi_m",
            "provider": "stripe",
            "currency": "USD",
            "amount_total": "1",
            "metadata": {"order": "A-1", "channel": "web"},
        },
        headers=auth(1),
    )
    assert created.json()["metadata"] == {"order": "A-1", "channel": "web"}
    url = f"{PAYMENTS}{created.json()['id']}"
    merged = await client.put(url, json={"metadata": {"channel": "", "coupon": "X"}}, headers=auth(1))
    assert merged.status_code == 200
    assert merged.json()["metadata"] == {"order": "A-1", "coupon": "X"}
    assert (await stored(db, created.json()["id"])).metadata_ == {"order": "A-1", "coupon": "X"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "metadata",
    [
        {"k" * 41: "v"},
        {"k": "v" * 501},
        {f"k{i}": "v" for i in range(51)},
        {"k": 1},
        {"": "v"},
        ["k"],
    ],
)
async def test_metadata_limits_are_422(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, metadata: object
) -> None:
    response = await client.post(
        PAYMENTS,
        json={
            "payment_id": "pi_ml",
            "provider": "stripe",
            "currency": "USD",
            "amount_total": "1",
            "metadata": metadata,
        },
        headers=auth(1),
    )
    problem = assert_problem(response, 422, "/validation-error")
    assert all(location.startswith("body.metadata") for location in error_locations(problem)), problem
    assert await payment_count(db) == 0


async def test_metadata_merge_beyond_50_keys_is_422(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, metadata_={f"k{i}": "v" for i in range(50)})
    response = await client.put(f"{PAYMENTS}{payment.id}", json={"metadata": {"one-more": "v"}}, headers=auth(1))
    assert_problem(response, 422, "/invalid-payment")
    assert len((await stored(db, payment.id)).metadata_) == 50  # type: ignore[union-attr]
