from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.idempotency import request_fingerprint
from app.core.database import Database, Statement
from app.models import IdempotencyKey, IdempotencyState, Payment, PaymentStatus
from app.repositories.idempotency import Claim, IdempotencyKeys
from app.repositories.payments import Payments
from app.services.housekeeping import purge_expired_idempotency_keys
from tests.conftest import TokenFactory, make_payment
from tests.helpers import assert_problem, payment_count, stored

PAYMENTS = "/api/v1/payments/"


def body(**overrides: Any) -> dict[str, Any]:
    return {"payment_id": "pi_idem", "provider": "stripe", "currency": "USD", "amount_total": "10.00", **overrides}


def with_key(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def keys(db: AsyncSession) -> list[IdempotencyKey]:
    statement = select(IdempotencyKey).order_by(IdempotencyKey.user_id, IdempotencyKey.key)
    return list(await db.scalars(statement.execution_options(populate_existing=True)))


async def test_replay_returns_the_same_bytes_and_writes_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    headers = with_key(auth(1), "key-1")
    first = await client.post(PAYMENTS, json=body(), headers=headers)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers

    again = await client.post(PAYMENTS, json={**body()}, headers=headers)
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["etag"] == first.headers["etag"] == '"1"'
    assert again.headers["content-type"] == "application/json"
    assert await payment_count(db) == 1
    [key] = await keys(db)
    assert (key.user_id, key.key, key.state, key.response_status) == (1, "key-1", IdempotencyState.COMPLETED, 201)
    assert key.response_body == first.content


async def test_same_body_in_another_key_order_is_the_same_request(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    headers = with_key(auth(1), "key-order")
    first = await client.post(
        PAYMENTS,
        content=b'{"payment_id":"pi_o","provider":"stripe","currency":"USD","amount_total":"1"}',
        headers={**headers, "content-type": "application/json"},
    )
    again = await client.post(
        PAYMENTS,
        content=b'{ "amount_total": "1", "currency": "USD", "provider": "stripe", "payment_id": "pi_o" }',
        headers={**headers, "content-type": "application/json"},
    )
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert await payment_count(db) == 1


async def test_key_reused_with_another_body_is_422_and_writes_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    headers = with_key(auth(1), "key-2")
    assert (await client.post(PAYMENTS, json=body(), headers=headers)).status_code == 201
    reused = await client.post(PAYMENTS, json=body(payment_id="pi_other"), headers=headers)
    problem = assert_problem(reused, 422, "/idempotency-key-reused")
    assert "different request" in problem["detail"]
    assert await payment_count(db) == 1


async def test_key_reused_on_another_route_is_422(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1)
    headers = with_key(auth(1), "key-3")
    assert (await client.delete(f"{PAYMENTS}{payment.id}", headers=headers)).status_code == 200
    assert_problem(await client.post(PAYMENTS, json=body(), headers=headers), 422, "/idempotency-key-reused")
    assert await payment_count(db) == 1


async def test_keys_are_scoped_to_the_caller(client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession) -> None:
    first = await client.post(PAYMENTS, json=body(payment_id="pi_u1"), headers=with_key(auth(1), "shared"))
    second = await client.post(PAYMENTS, json=body(payment_id="pi_u2"), headers=with_key(auth(2), "shared"))
    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert second.json()["user_id"] == 2
    assert [(key.user_id, key.key) for key in await keys(db)] == [(1, "shared"), (2, "shared")]


async def test_an_error_response_is_stored_and_replayed(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    await make_payment(db, user_id=9, payment_id="pi_taken")
    headers = with_key(auth(1), "key-dup")
    first = await client.post(PAYMENTS, json=body(payment_id="pi_taken"), headers=headers)
    assert_problem(first, 409, "/duplicate-payment")
    again = await client.post(PAYMENTS, json=body(payment_id="pi_taken"), headers=headers)
    assert again.status_code == 409
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == "application/problem+json"
    assert await payment_count(db) == 1


async def test_a_failed_domain_check_rolls_back_the_work_but_stores_the_answer(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1, status=PaymentStatus.SUCCEEDED)
    headers = with_key(auth(1, service=True), "key-illegal")
    response = await client.patch(f"{PAYMENTS}{payment.id}/status", json={"payment_status": "pending"}, headers=headers)
    assert_problem(response, 409, "/illegal-status-transition")
    [key] = await keys(db)
    assert (key.state, key.response_status) == (IdempotencyState.COMPLETED, 409)
    assert (await stored(db, payment.id)).payment_status is PaymentStatus.SUCCEEDED  # type: ignore[union-attr]


async def test_validation_errors_are_not_stored_so_a_corrected_retry_runs(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    headers = with_key(auth(1), "key-fix")
    assert_problem(await client.post(PAYMENTS, json=body(amount_total="-1"), headers=headers), 422)
    assert await keys(db) == []
    fixed = await client.post(PAYMENTS, json=body(), headers=headers)
    assert fixed.status_code == 201
    assert "idempotent-replayed" not in fixed.headers


async def test_a_key_in_flight_is_409_and_not_stored(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    fingerprint = request_fingerprint("POST", PAYMENTS, b'{"x": 1}')
    db.add(
        IdempotencyKey(
            user_id=1,
            key="busy",
            fingerprint=fingerprint,
            state=IdempotencyState.IN_FLIGHT,
            expires_at=func.now() + timedelta(hours=1),
        )
    )
    await db.flush()
    response = await client.post(PAYMENTS, json=body(), headers=with_key(auth(1), "busy"))
    # a different fingerprint would be 422; use the real one for the in-flight case
    assert_problem(response, 422, "/idempotency-key-reused")
    await db.execute(
        update(IdempotencyKey).values(
            fingerprint=request_fingerprint("POST", PAYMENTS, httpx.Request("POST", "/", json=body()).content)
        )
    )
    in_flight = await client.post(PAYMENTS, json=body(), headers=with_key(auth(1), "busy"))
    assert_problem(in_flight, 409, "/idempotency-key-in-flight")
    assert in_flight.headers["retry-after"] == "1"
    [key] = await keys(db)
    assert (key.state, key.response_status) == (IdempotencyState.IN_FLIGHT, None)
    assert await payment_count(db) == 0


async def test_an_abandoned_in_flight_key_can_be_taken_over(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    fingerprint = request_fingerprint("POST", PAYMENTS, httpx.Request("POST", "/", json=body()).content)
    db.add(
        IdempotencyKey(
            user_id=1,
            key="stuck",
            fingerprint=fingerprint,
            state=IdempotencyState.IN_FLIGHT,
            locked_at=func.now() - timedelta(minutes=5),
            expires_at=func.now() + timedelta(hours=1),
        )
    )
    await db.flush()
    response = await client.post(PAYMENTS, json=body(), headers=with_key(auth(1), "stuck"))
    assert response.status_code == 201
    assert await payment_count(db) == 1


async def test_an_expired_key_runs_the_request_again(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1)
    url = f"{PAYMENTS}{payment.id}/status"
    headers = with_key(auth(1, service=True), "old")
    assert (await client.patch(url, json={"payment_status": "failed"}, headers=headers)).status_code == 200
    await db.execute(update(Payment).where(Payment.id == payment.id).values(payment_status=PaymentStatus.SUCCEEDED))
    replay = await client.patch(url, json={"payment_status": "failed"}, headers=headers)
    assert (replay.status_code, replay.json()["payment_status"]) == (200, "failed")

    await db.execute(update(IdempotencyKey).values(expires_at=func.now() - timedelta(seconds=1)))
    rerun = await client.patch(url, json={"payment_status": "failed"}, headers=headers)
    assert_problem(rerun, 409, "/illegal-status-transition")
    assert "idempotent-replayed" not in rerun.headers


async def test_purge_deletes_only_expired_keys(db: AsyncSession, test_database: Database) -> None:
    for number, lifetime in enumerate([-10, -1, 60]):
        db.add(
            IdempotencyKey(
                user_id=1,
                key=f"k{number}",
                fingerprint="f",
                state=IdempotencyState.COMPLETED,
                expires_at=func.now() + timedelta(seconds=lifetime),
            )
        )
    await db.flush()
    assert await IdempotencyKeys(test_database.unit_of_work()).purge_expired() == 2
    assert [key.key for key in await keys(db)] == ["k2"]


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"tab\there", "ünïcode".encode()])
async def test_a_bad_key_is_400_and_nothing_runs(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, key: bytes
) -> None:
    headers = httpx.Headers({**auth(1)})
    headers["Idempotency-Key"] = key.decode("latin-1")
    response = await client.post(PAYMENTS, json=body(), headers=headers)
    assert_problem(response, 400, "/invalid-idempotency-key")
    assert await payment_count(db) == 0
    assert await keys(db) == []


async def test_quoted_key_form_from_the_draft_is_accepted(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    response = await client.post(PAYMENTS, json=body(), headers=with_key(auth(1), '"8e03978e-40d5"'))
    assert response.status_code == 201
    assert [key.key for key in await keys(db)] == ["8e03978e-40d5"]


async def test_two_key_headers_are_400(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    headers = httpx.Headers([*auth(1).items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")])
    assert_problem(await client.post(PAYMENTS, json=body(), headers=headers), 400)


async def test_housekeeping_purges_every_expired_batch(
    db: AsyncSession, test_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    original_purge = IdempotencyKeys.purge_expired
    batches: list[int] = []

    async def in_batches_of_two(self: IdempotencyKeys, batch_size: int = 1000) -> int:
        batches.append(await original_purge(self, batch_size=2))
        return batches[-1]

    monkeypatch.setattr(IdempotencyKeys, "purge_expired", in_batches_of_two)
    for number in range(5):
        db.add(
            IdempotencyKey(
                user_id=3,
                key=f"old{number}",
                fingerprint="f",
                state=IdempotencyState.COMPLETED,
                expires_at=func.now() - timedelta(seconds=1),
            )
        )
    db.add(
        IdempotencyKey(
            user_id=3,
            key="fresh",
            fingerprint="f",
            state=IdempotencyState.COMPLETED,
            expires_at=func.now() + timedelta(hours=1),
        )
    )
    await db.commit()
    assert await purge_expired_idempotency_keys(test_database) == 5
    assert batches == [2, 2, 1, 0]
    assert [key.key for key in await keys(db)] == ["fresh"]


async def test_a_create_whose_statement_fails_releases_the_key_so_a_retry_runs(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    original_insert = Payments.insert_completing_key  # create's one statement: payment, history, key
    failures = iter([True])

    async def insert_failing_once(self: Payments, *args: Any, **kwargs: Any) -> Any:
        if next(failures, False):
            raise OSError("connection lost")
        return await original_insert(self, *args, **kwargs)

    monkeypatch.setattr(Payments, "insert_completing_key", insert_failing_once)
    headers = with_key(auth(1), "insert-fails")
    assert_problem(await client.post(PAYMENTS, json=body(), headers=headers), 503, "/database-unavailable")
    assert await keys(db) == []
    assert await payment_count(db) == 0
    retry = await client.post(PAYMENTS, json=body(), headers=headers)
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers
    assert await payment_count(db) == 1


async def test_a_failed_commit_of_a_status_change_releases_the_key(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment = await make_payment(db, user_id=1, status=PaymentStatus.PENDING)
    original_complete = IdempotencyKeys.complete  # the last statement before the status change's COMMIT
    failures = iter([True])

    async def complete_then_lose_the_connection(self: IdempotencyKeys, completion: Any) -> bool:
        completed = await original_complete(self, completion)
        if next(failures, False):
            raise OSError("connection lost before COMMIT")
        return completed

    monkeypatch.setattr(IdempotencyKeys, "complete", complete_then_lose_the_connection)
    headers = with_key(auth(1, service=True), "status-commit-fails")
    url = f"{PAYMENTS}{payment.id}/status"
    response = await client.patch(url, json={"payment_status": "processing"}, headers=headers)
    assert_problem(response, 503, "/database-unavailable")
    assert await keys(db) == []
    assert (await stored(db, payment.id)).payment_status is PaymentStatus.PENDING  # type: ignore[union-attr]
    retry = await client.patch(url, json={"payment_status": "processing"}, headers=headers)
    assert retry.status_code == 200, retry.text
    assert "idempotent-replayed" not in retry.headers
    assert (await stored(db, payment.id)).payment_status is PaymentStatus.PROCESSING  # type: ignore[union-attr]


_TAKE_OVER = Statement.of(
    text(
        "UPDATE idempotency_keys SET locked_at = locked_at + interval '61 seconds', fingerprint = 'the retry' "
        "WHERE user_id = :user_id AND key = :key"
    )
)


def a_retry_takes_the_key_over_after_each_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    """After its claim, each request's key is taken over (as a retry does once the lock timed out)."""
    original_claim = IdempotencyKeys.claim

    async def claim_then_lose_it(
        self: IdempotencyKeys, user_id: int, key: str, *args: Any, **kwargs: Any
    ) -> Claim | None:
        claim = await original_claim(self, user_id, key, *args, **kwargs)
        await self.uow.execute(_TAKE_OVER, user_id=user_id, key=key)
        return claim

    monkeypatch.setattr(IdempotencyKeys, "claim", claim_then_lose_it)


async def test_a_request_whose_key_was_taken_over_stores_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_retry_takes_the_key_over_after_each_claim(monkeypatch)
    response = await client.post(PAYMENTS, json=body(), headers=with_key(auth(1), "taken-over"))
    assert_problem(response, 409, "/idempotency-key-in-flight")
    assert await payment_count(db) == 0  # its work was rolled back
    [key] = await keys(db)  # the retry's claim: neither completed nor released by this request
    assert (key.state, key.fingerprint, key.response_status) == (IdempotencyState.IN_FLIGHT, "the retry", None)


async def test_a_status_change_whose_key_was_taken_over_changes_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment = await make_payment(db, user_id=1, status=PaymentStatus.PENDING)
    a_retry_takes_the_key_over_after_each_claim(monkeypatch)
    url = f"{PAYMENTS}{payment.id}/status"
    response = await client.patch(
        url, json={"payment_status": "processing"}, headers=with_key(auth(1, service=True), "lost")
    )
    assert_problem(response, 409, "/idempotency-key-in-flight")
    assert (await stored(db, payment.id)).payment_status is PaymentStatus.PENDING  # type: ignore[union-attr]
    [key] = await keys(db)
    assert (key.state, key.fingerprint) == (IdempotencyState.IN_FLIGHT, "the retry")


async def test_a_replay_checks_again_that_the_caller_may_see_the_payment(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession
) -> None:
    payment = await make_payment(db, user_id=1)
    url = f"{PAYMENTS}{payment.id}/status"
    as_admin = await client.patch(url, json={"payment_status": "failed"}, headers=with_key(auth(9, admin=True), "k"))
    assert as_admin.status_code == 200
    replay = await client.patch(url, json={"payment_status": "failed"}, headers=with_key(auth(9, admin=True), "k"))
    assert replay.headers["idempotent-replayed"] == "true"
    # The same user 9, the admin role revoked: someone else's payment is a 404, replay or not.
    revoked = await client.patch(url, json={"payment_status": "failed"}, headers=with_key(auth(9), "k"))
    assert_problem(revoked, 404, "/payment-not-found")
    assert "user_id" not in revoked.text
    # The owner's own replays are unaffected.
    mine = await client.post(PAYMENTS, json=body(), headers=with_key(auth(9), "own"))
    again = await client.post(PAYMENTS, json=body(), headers=with_key(auth(9), "own"))
    assert (again.status_code, again.headers["idempotent-replayed"], again.content) == (201, "true", mine.content)


NESTED_JSON = b"[" * 30_000 + b"]" * 30_000  # under MAX_BODY_BYTES, deeper than Python's recursion limit


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", PAYMENTS), ("PATCH", "{payment}/status"), ("PUT", "{payment}")],
)
@pytest.mark.parametrize("key", [None, "deep"])
async def test_deeply_nested_json_is_a_422_and_writes_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, db: AsyncSession, method: str, path: str, key: str | None
) -> None:
    payment = await make_payment(db, user_id=1)
    url = path if path == PAYMENTS else f"{PAYMENTS}{path.format(payment=payment.id)}"
    headers = {**auth(1), "Content-Type": "application/json"} | ({"Idempotency-Key": key} if key else {})
    problem = assert_problem(await client.request(method, url, content=NESTED_JSON, headers=headers), 422)
    assert [(error["location"], error["type"]) for error in problem["errors"]] == [("body", "json_invalid")]
    assert await keys(db) == []
    assert await payment_count(db) == 1
    row = await stored(db, payment.id)
    assert row is not None and row.version == payment.version
