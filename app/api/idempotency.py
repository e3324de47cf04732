"""Idempotency-Key handling (IETF draft "The Idempotency-Key HTTP Header Field", Stripe's rules).

1. The key is claimed in its own statement, committed at once (apart from the request's unit of
   work, through the same statement runner), so a racing request with the same key, in any
   process, sees it: in flight -> 409, other request -> 422, done -> replay.
2. The work and the response stored on the key commit together or not at all: in the request's
   transaction, or, for a create, in the one statement that inserts the payment.
3. A domain error (4xx) rolls the work back and stores the error response; any other failure
   releases the key so a retry can run.
"""

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated

import orjson
from fastapi import Depends, Header, Request
from starlette.responses import Response

from app.api.problems import render_domain_error
from app.api.responses import payment_response
from app.core.database import UnitOfWork
from app.core.errors import (
    KEY_TAKEN_OVER,
    DomainError,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    PaymentNotFound,
)
from app.core.security import Principal
from app.dependencies.auth import CurrentUser
from app.dependencies.database import UnitOfWorkDep
from app.models import IdempotencyState
from app.models.idempotency import IDEMPOTENCY_KEY_LENGTH
from app.repositories.idempotency import Claim, IdempotencyKeys, KeyCompletion, StoredResponse
from app.schemas.payment import PaymentRecord

logger = logging.getLogger(__name__)

REPLAYED_HEADER = "Idempotent-Replayed"
# Response headers worth replaying along with the body.
_STORED_HEADERS = ("content-type", "etag", "location")


def parse_idempotency_key(values: list[str]) -> str | None:
    if not values:
        return None
    if len(values) > 1:
        raise InvalidIdempotencyKey("Send one Idempotency-Key header, not several")
    key = values[0]
    if len(key) >= 2 and key.startswith('"') and key.endswith('"'):
        key = key[1:-1]  # the draft's sf-string form: "abc"
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_LENGTH or not all(" " <= char <= "~" for char in key):
        raise InvalidIdempotencyKey(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LENGTH} printable ASCII characters")
    return key


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode() if body else b""
    except (ValueError, RecursionError):  # not JSON, or nested too deep: the route answers 422 for it
        canonical = body
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), canonical])).hexdigest()


def stored(response: Response) -> StoredResponse:
    headers = {name: response.headers[name] for name in _STORED_HEADERS if name in response.headers}
    return StoredResponse(status=response.status_code, headers=headers, body=bytes(response.body))


class Idempotency:
    """The request's Idempotency-Key, if it sent one, around the work that answers it."""

    def __init__(
        self,
        *,
        key: str | None,
        principal: Principal,
        fingerprint: str,
        uow: UnitOfWork,
        ttl: timedelta,
        lock_timeout: timedelta,
        for_new_payment: bool = False,
    ) -> None:
        self.key = key
        self.principal = principal
        self.user_id = principal.user_id
        self.fingerprint = fingerprint
        self.uow = uow
        self.ttl = ttl
        self.lock_timeout = lock_timeout
        # A create reserves its payment's id with the claim and stores its response in its insert.
        self.for_new_payment = for_new_payment
        self._claim: Claim | None = None
        self._stored: Response | None = None  # the response stored on the key

    async def run(self, work: Callable[[], Awaitable[Response]]) -> Response:
        if self.key is None:
            return await work()
        claim = await self._claim_key(self.key)
        if isinstance(claim, Response):
            return claim
        self._claim = claim
        keys = IdempotencyKeys(self.uow)
        try:
            try:
                if self.for_new_payment:
                    response = await work()  # one statement: the payment, its history, the key's response
                else:
                    async with self.uow.transaction():  # the work and the key's response commit together
                        response = await work()
                        await self._complete(keys, response)
            except IdempotencyKeyInFlight:
                raise  # this request lost its key to a retry: it stores nothing
            except DomainError as error:  # refused: the work is rolled back, the refusal is the answer
                self._stored = None
                response = render_domain_error(error)
            if self._stored is None:
                await self._complete(keys, response)
        except BaseException:
            await self._release(claim)
            raise
        return response

    async def _complete(self, keys: IdempotencyKeys, response: Response) -> None:
        if not await keys.complete(KeyCompletion(self._owned_claim(), stored(response))):
            # This request outlived the key's lock timeout and a retry took the key over: that
            # retry's outcome is the key's, so this one's work is rolled back.
            raise IdempotencyKeyInFlight(KEY_TAKEN_OVER)
        self._stored = response

    # -- NewPaymentKey (app/services/payments.py): the create's response, stored by its insert --

    def new_payment_key(self) -> "Idempotency | None":
        return self if self._claim is not None and self.for_new_payment else None

    def reserved(self) -> tuple[int, datetime]:
        claim = self._owned_claim()
        if claim.payment_id is None:
            raise LookupError("this Idempotency-Key was claimed without reserving a payment id")
        return claim.payment_id, claim.claimed_at

    def completion(self, payment: PaymentRecord) -> KeyCompletion:
        response = payment_response(payment, 201)
        self._stored = response
        return KeyCompletion(self._owned_claim(), stored(response))

    def stored_response(self) -> Response | None:
        """The response the work stored on the key (the create's), to send as it was stored."""
        return self._stored

    # -- internals ------------------------------------------------------------------------------

    def _owned_claim(self) -> Claim:
        if self._claim is None:
            raise LookupError("no Idempotency-Key is claimed by this request")
        return self._claim

    async def _claim_key(self, key: str) -> Response | Claim:
        """Own the key, or answer for it: a replay, or an in-flight / reuse error."""
        keys = IdempotencyKeys(self.uow.apart())  # committed at once, so racing requests see it
        claim = await keys.claim(
            self.user_id,
            key,
            self.fingerprint,
            ttl=self.ttl,
            lock_timeout=self.lock_timeout,
            reserve_payment_id=self.for_new_payment,
        )
        existing = None if claim is not None else await keys.get(self.user_id, key)
        if claim is not None:
            return claim
        if existing is None:  # impossible while the conflicting row is locked; kept for safety
            raise IdempotencyKeyInFlight("A request with this Idempotency-Key is in progress; retry later")
        if existing["fingerprint"] != self.fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different request (method, path or body)"
            )
        status = existing["response_status"]
        if existing["state"] == IdempotencyState.IN_FLIGHT or status is None:
            raise IdempotencyKeyInFlight("A request with this Idempotency-Key is in progress; retry later")
        body = existing["response_body"] or b""
        if not self._may_still_see(body):
            raise PaymentNotFound("Payment not found")
        headers = {**(existing["response_headers"] or {}), REPLAYED_HEADER: "true"}
        return Response(body, status, headers=headers)

    def _may_still_see(self, body: bytes) -> bool:
        """Whether the caller may still see the payment a stored response shows: the key was theirs,
        but the role that let them see someone else's payment (admin, service) may be gone since."""
        if self.principal.is_trusted:
            return True
        try:
            owner = orjson.loads(body).get("user_id")
        except (orjson.JSONDecodeError, AttributeError):
            return True  # not a payment
        return owner is None or owner == self.principal.user_id

    async def _release(self, claim: Claim) -> None:
        try:
            await IdempotencyKeys(self.uow.apart()).release(claim)
        except Exception:  # e.g. the database is down: the key stays in flight until its lock times out
            logger.warning("could not release idempotency key after a failed request", exc_info=True)


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Optional, 1-255 printable characters, scoped to the caller. A retry with the same "
        "key and request gets the first response again (header Idempotent-Replayed: true).",
    ),
]


async def _idempotency(
    request: Request, principal: CurrentUser, uow: UnitOfWorkDep, *, for_new_payment: bool
) -> Idempotency:
    key = parse_idempotency_key(request.headers.getlist("idempotency-key"))
    settings = request.app.state.settings
    return Idempotency(
        key=key,
        principal=principal,
        fingerprint=request_fingerprint(request.method, request.url.path, await request.body()) if key else "",
        uow=uow,
        ttl=timedelta(seconds=settings.idempotency_key_ttl_seconds),
        lock_timeout=timedelta(seconds=settings.idempotency_lock_timeout_seconds),
        for_new_payment=for_new_payment,
    )


async def get_idempotency(
    request: Request, principal: CurrentUser, uow: UnitOfWorkDep, idempotency_key: IdempotencyKeyHeader = None
) -> Idempotency:
    return await _idempotency(request, principal, uow, for_new_payment=False)


async def get_new_payment_idempotency(
    request: Request, principal: CurrentUser, uow: UnitOfWorkDep, idempotency_key: IdempotencyKeyHeader = None
) -> Idempotency:
    return await _idempotency(request, principal, uow, for_new_payment=True)


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
NewPaymentIdempotencyDep = Annotated[Idempotency, Depends(get_new_payment_idempotency)]
