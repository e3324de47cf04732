"""Idempotency-Key handling (IETF draft "The Idempotency-Key HTTP Header Field", Stripe's rules).

1. The key is claimed in its own short transaction, committed at once, so a racing request with
   the same key (in any process) sees it: in flight -> 409, other request -> 422, done -> replay.
2. The work runs in the request's transaction, and the response is stored on the key in that same
   transaction: the payment and its stored response commit together or not at all.
3. A domain error (4xx) rolls the work back and stores the error response; any other failure
   releases the key so a retry can run.
"""

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.responses import Response

from app.api.problems import render_domain_error
from app.core.config import Settings
from app.core.database import DriverConnectionFactory
from app.core.errors import DomainError, IdempotencyKeyInFlight, IdempotencyKeyReused, InvalidIdempotencyKey
from app.core.security import Principal
from app.dependencies.auth import CurrentUser
from app.dependencies.database import DriverTransactionDep, SessionDep
from app.models import IdempotencyState
from app.models.idempotency import IDEMPOTENCY_KEY_LENGTH
from app.repositories.idempotency import (
    DriverKeyedTransaction,
    IdempotencyClaims,
    IdempotencyRepository,
    KeyedTransaction,
    StoredResponse,
)

logger = logging.getLogger(__name__)

REPLAYED_HEADER = "Idempotent-Replayed"
# Response headers worth replaying along with the body.
_STORED_HEADERS = ("content-type", "etag")


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
    except ValueError:
        canonical = body
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), canonical])).hexdigest()


def _stored(response: Response) -> StoredResponse:
    headers = {name: response.headers[name] for name in _STORED_HEADERS if name in response.headers}
    return StoredResponse(status=response.status_code, headers=headers, body=bytes(response.body))


class Idempotency:
    def __init__(
        self,
        *,
        key: str | None,
        user_id: int,
        fingerprint: str,
        transaction: KeyedTransaction,
        connect: DriverConnectionFactory,
        settings: Settings,
    ) -> None:
        self.key = key
        self.user_id = user_id
        self.fingerprint = fingerprint
        self.transaction = transaction
        self.connect = connect
        self.ttl = timedelta(seconds=settings.idempotency_key_ttl_seconds)
        self.lock_timeout = timedelta(seconds=settings.idempotency_lock_timeout_seconds)

    async def run(self, work: Callable[[], Awaitable[Response]]) -> Response:
        if self.key is None:
            return await work()
        claim = await self._claim(self.key)
        if isinstance(claim, Response):
            return claim
        try:
            try:
                response = await work()
            except DomainError as error:
                await self.transaction.rollback()
                response = render_domain_error(error)
            if not await self.transaction.complete(self.user_id, self.key, claim, _stored(response)):
                # This request outlived the key's lock timeout and a retry took the key over: that
                # retry's outcome is the key's, so this one's work is rolled back (below).
                raise IdempotencyKeyInFlight(
                    "This request took longer than the Idempotency-Key's lock timeout and a retry took the "
                    "key over; nothing was stored by this request"
                )
            # Committed here rather than by the transaction's dependency (where it becomes a no-op):
            # if this commit fails, the key must be released, or retries would get 409 until the
            # lock timeout although nothing was stored.
            await self.transaction.commit()
        except BaseException:
            with suppress(Exception):
                await self.transaction.rollback()
            await self._release(self.key, claim)
            raise
        return response

    async def _claim(self, key: str) -> Response | datetime:
        """Own the key (the claim's time, which names the claim), or answer for it: a replay, or
        an in-flight / reuse error."""
        # One statement in autocommit: committed at once, so racing requests see the claim.
        async with self.connect() as connection:
            repository = IdempotencyClaims(connection)
            claimed_at = await repository.claim(
                self.user_id, key, self.fingerprint, ttl=self.ttl, lock_timeout=self.lock_timeout
            )
            if claimed_at is not None:
                return claimed_at
            existing = await repository.get(self.user_id, key)
        if existing is None:  # impossible while the conflicting row is locked; kept for safety
            raise IdempotencyKeyInFlight("A request with this Idempotency-Key is in progress; retry later")
        if existing["fingerprint"] != self.fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different request (method, path or body)"
            )
        status = existing["response_status"]
        if existing["state"] == IdempotencyState.IN_FLIGHT or status is None:
            raise IdempotencyKeyInFlight("A request with this Idempotency-Key is in progress; retry later")
        headers = {**(existing["response_headers"] or {}), REPLAYED_HEADER: "true"}
        return Response(existing["response_body"] or b"", status, headers=headers)

    async def _release(self, key: str, claimed_at: datetime) -> None:
        try:
            async with self.connect() as connection:
                await IdempotencyClaims(connection).release(self.user_id, key, claimed_at)
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


async def _idempotency(request: Request, principal: Principal, transaction: KeyedTransaction) -> Idempotency:
    key = parse_idempotency_key(request.headers.getlist("idempotency-key"))
    return Idempotency(
        key=key,
        user_id=principal.user_id,
        fingerprint=request_fingerprint(request.method, request.url.path, await request.body()) if key else "",
        transaction=transaction,
        connect=request.app.state.side_driver_connection,
        settings=request.app.state.settings,
    )


async def get_idempotency(
    request: Request, principal: CurrentUser, session: SessionDep, idempotency_key: IdempotencyKeyHeader = None
) -> Idempotency:
    """For routes whose work runs on the request's session."""
    return await _idempotency(request, principal, IdempotencyRepository(session))


async def get_driver_idempotency(
    request: Request,
    principal: CurrentUser,
    transaction: DriverTransactionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Idempotency:
    """For routes whose work runs on a driver transaction (create)."""
    return await _idempotency(request, principal, DriverKeyedTransaction(transaction))


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
DriverIdempotencyDep = Annotated[Idempotency, Depends(get_driver_idempotency)]
