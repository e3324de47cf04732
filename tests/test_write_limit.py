"""USER_WRITE_LIMIT_PER_MINUTE: one end user cannot create payments without bound (429 problem+json
with Retry-After, nothing written); reads, services and admins are not limited."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.rate_limit import UserWriteLimit
from app.core.config import Settings
from app.core.errors import TooManyWrites
from app.core.security import CallerKind, Principal
from app.main import create_app
from app.models import Payment
from tests.conftest import TokenFactory, attach_test_connection, make_payment
from tests.helpers import assert_problem

PAYMENTS = "/api/v1/payments/"


@pytest.fixture
async def limited_client(driver_connection: Any, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    limited = settings.model_copy(update={"user_write_limit_per_minute": 3})
    app = create_app(limited)
    attach_test_connection(app, driver_connection, limited)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


def new_payment(number: int) -> dict[str, str]:
    return {"payment_id": f"pi_limit_{number}", "provider": "stripe", "currency": "USD", "amount_total": "1.00"}


async def payments_of(db: AsyncSession, user_id: int) -> int:
    return int(await db.scalar(select(func.count()).select_from(Payment).where(Payment.user_id == user_id)) or 0)


async def test_a_user_beyond_the_limit_gets_429_and_nothing_is_written(
    limited_client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    for number in range(3):
        assert (await limited_client.post(PAYMENTS, json=new_payment(number), headers=auth(1))).status_code == 201
    refused = await limited_client.post(PAYMENTS, json=new_payment(3), headers=auth(1))
    problem = assert_problem(refused, 429, "/too-many-requests")
    assert "3 a minute" in problem["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 20  # one write comes back every 20 s
    assert await payments_of(db, 1) == 3

    payment = await make_payment(db, user_id=1)
    for write in (
        limited_client.put(f"{PAYMENTS}{payment.id}", json={"description": "x"}, headers=auth(1)),
        limited_client.delete(f"{PAYMENTS}{payment.id}", headers=auth(1)),
        limited_client.patch(f"{PAYMENTS}{payment.id}/status", json={"payment_status": "canceled"}, headers=auth(1)),
    ):
        assert_problem(await write, 429, "/too-many-requests")
    assert (await limited_client.get(f"{PAYMENTS}{payment.id}", headers=auth(1))).status_code == 200  # reads are free

    other_user = await limited_client.post(PAYMENTS, json=new_payment(10), headers=auth(2))
    assert other_user.status_code == 201
    for number in range(20, 25):  # a backend creates for many users: not limited
        created = await limited_client.post(PAYMENTS, json=new_payment(number), headers=auth(7, service=True))
        assert created.status_code == 201


def test_the_bucket_refills_at_the_limit_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("app.api.rate_limit.time.monotonic", lambda: now[0])
    limit = UserWriteLimit(per_minute=60)  # one write a second
    user = Principal(1)
    for _ in range(60):
        limit.take(user)
    with pytest.raises(TooManyWrites) as refused:
        limit.take(user)
    assert refused.value.headers() == {"Retry-After": "1"}
    now[0] += 1.0
    limit.take(user)  # one write came back
    with pytest.raises(TooManyWrites):
        limit.take(user)
    limit.take(Principal(1, CallerKind.ADMIN))  # admins are not counted


def test_only_the_most_recent_users_are_remembered() -> None:
    limit = UserWriteLimit(per_minute=1, max_users=2)
    for user_id in (1, 2, 3):
        limit.take(Principal(user_id))
    limit.take(Principal(1))  # user 1's bucket was dropped as the oldest: it starts full again
    with pytest.raises(TooManyWrites):
        limit.take(Principal(3))


def test_zero_turns_the_limit_off() -> None:
    limit = UserWriteLimit(per_minute=0)
    for _ in range(1000):
        limit.take(Principal(1))
