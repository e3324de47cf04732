import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import PaymentStatus as S
from app.services.status_rules import ALLOWED_TRANSITIONS
from tests.conftest import TokenFactory, make_payment
from tests.helpers import assert_problem, stored

ALLOWED = [
    (S.PENDING, S.PROCESSING),
    (S.PENDING, S.SUCCEEDED),
    (S.PENDING, S.FAILED),
    (S.PENDING, S.CANCELED),
    (S.PROCESSING, S.SUCCEEDED),
    (S.PROCESSING, S.FAILED),
    (S.PROCESSING, S.CANCELED),
    (S.FAILED, S.PENDING),
    (S.FAILED, S.PROCESSING),
    (S.FAILED, S.SUCCEEDED),
    (S.FAILED, S.CANCELED),
    (S.SUCCEEDED, S.REFUNDED),
]
REFUSED = [(a, b) for a in S for b in S if a != b and (a, b) not in ALLOWED]


# The state machine is exercised by a trusted backend (service role) acting on user 1's payment;
# what end users may do is in tests/test_trust_model.py.
SERVICE = 7


def status_url(payment_id: int) -> str:
    return f"/api/v1/payments/{payment_id}/status"


def test_the_rule_table_is_the_documented_one() -> None:
    table = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert table == set(ALLOWED)


@pytest.mark.parametrize(("current", "target"), ALLOWED)
async def test_allowed_move(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, current: S, target: S
) -> None:
    payment = await make_payment(db, user_id=1, status=current)
    response = await client.patch(
        status_url(payment.id), json={"payment_status": target.value}, headers=auth(SERVICE, service=True)
    )
    assert response.status_code == 200, response.text
    assert response.json()["payment_status"] == target.value
    row = await stored(db, payment.id)
    assert row is not None and row.payment_status is target


@pytest.mark.parametrize(("current", "target"), REFUSED)
async def test_refused_move_is_409_and_changes_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, current: S, target: S
) -> None:
    payment = await make_payment(db, user_id=1, status=current)
    before = payment.updated_at
    response = await client.patch(
        status_url(payment.id), json={"payment_status": target.value}, headers=auth(SERVICE, service=True)
    )
    problem = assert_problem(response, 409, "/illegal-status-transition")
    assert current.value in problem["detail"] and target.value in problem["detail"]
    row = await stored(db, payment.id)
    assert row is not None and row.payment_status is current and row.updated_at == before


@pytest.mark.parametrize("status", list(S))
async def test_same_status_is_a_200_no_op(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, status: S
) -> None:
    payment = await make_payment(db, user_id=1, status=status)
    before = payment.updated_at
    response = await client.patch(
        status_url(payment.id), json={"payment_status": status.value}, headers=auth(SERVICE, service=True)
    )
    assert response.status_code == 200
    assert response.json()["payment_status"] == status.value
    row = await stored(db, payment.id)
    assert row is not None and row.updated_at == before


async def test_status_move_updates_updated_at(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    from tests.conftest import utc

    payment = await make_payment(db, user_id=1, created_at=utc(2026, 1, 1))
    response = await client.patch(
        status_url(payment.id), json={"payment_status": "processing"}, headers=auth(SERVICE, service=True)
    )
    assert response.status_code == 200
    assert response.json()["created_at"] == "2026-01-01T00:00:00Z"
    assert response.json()["updated_at"] != "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "payload",
    [{"payment_status": "paid"}, {}, {"payment_status": None}, {"payment_status": "pending", "x": 1}],
)
async def test_bad_status_body_is_422(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, payload: dict[str, object]
) -> None:
    payment = await make_payment(db, user_id=1)
    assert_problem(await client.patch(status_url(payment.id), json=payload, headers=auth(1)), 422)
    assert (await stored(db, payment.id)).payment_status is S.PENDING  # type: ignore[union-attr]


async def test_someone_elses_payment_is_404_and_unchanged(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1)
    response = await client.patch(status_url(payment.id), json={"payment_status": "canceled"}, headers=auth(2))
    assert_problem(response, 404, "/payment-not-found")
    assert (await stored(db, payment.id)).payment_status is S.PENDING  # type: ignore[union-attr]


async def test_admin_may_move_anyones_payment(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    payment = await make_payment(db, user_id=1)
    response = await client.patch(
        status_url(payment.id), json={"payment_status": "failed"}, headers=auth(99, admin=True)
    )
    assert response.status_code == 200
    assert response.json()["user_id"] == 1


async def test_missing_payment_is_404(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    response = await client.patch(status_url(123456789), json={"payment_status": "canceled"}, headers=auth(1))
    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("current", "service"), [(S.PENDING, False), (S.PENDING, True), (S.PROCESSING, True), (S.FAILED, True)]
)
async def test_delete_cancels_and_keeps_the_payment(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, current: S, service: bool
) -> None:
    payment = await make_payment(db, user_id=1, status=current)
    headers = auth(SERVICE, service=True) if service else auth(1)
    response = await client.delete(f"/api/v1/payments/{payment.id}", headers=headers)
    assert response.status_code == 200
    assert response.json()["payment_status"] == "canceled"
    assert response.json()["id"] == payment.id
    row = await stored(db, payment.id)
    assert row is not None and row.payment_status is S.CANCELED


async def test_delete_of_a_canceled_payment_is_200_and_changes_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, status=S.CANCELED)
    before = payment.updated_at
    response = await client.delete(f"/api/v1/payments/{payment.id}", headers=auth(1))
    assert response.status_code == 200
    assert response.json()["payment_status"] == "canceled"
    assert (await stored(db, payment.id)).updated_at == before  # type: ignore[union-attr]


@pytest.mark.parametrize("current", [S.SUCCEEDED, S.REFUNDED])
async def test_delete_of_a_settled_payment_is_409(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, current: S
) -> None:
    payment = await make_payment(db, user_id=1, status=current)
    assert_problem(await client.delete(f"/api/v1/payments/{payment.id}", headers=auth(1)), 409)
    assert (await stored(db, payment.id)).payment_status is current  # type: ignore[union-attr]


async def test_delete_of_someone_elses_payment_is_404(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1)
    assert_problem(await client.delete(f"/api/v1/payments/{payment.id}", headers=auth(2)), 404)
    assert (await stored(db, payment.id)).payment_status is S.PENDING  # type: ignore[union-attr]
