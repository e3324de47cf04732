"""Who may see and change what: the checks every service applies the same way."""

from collections.abc import Collection
from typing import Protocol, TypeVar

from app.core.errors import Forbidden, PaymentNotFound, PreconditionFailed
from app.core.security import Principal
from app.schemas.payment import PaymentRecord

OUTCOMES_ARE_FOR_BACKENDS = (
    "only a trusted backend (a token with the service role), an admin or a verified gateway webhook may"
)

# The versions an If-Match header accepts; None when the request has no If-Match (or `*`).
ExpectedVersions = Collection[int] | None


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


Record = TypeVar("Record", bound=Versioned)


def visible_to(payment: PaymentRecord | None, principal: Principal) -> PaymentRecord:
    # Someone else's payment is reported exactly like a missing one, so ids cannot be probed.
    if payment is None or not (principal.is_trusted or payment.user_id == principal.user_id):
        raise PaymentNotFound("Payment not found")
    return payment


def check_precondition(record: Record, expected: ExpectedVersions, what: str = "payment") -> Record:
    if expected is not None and record.version not in expected:
        raise PreconditionFailed(
            f'The {what} has changed (its ETag is now "{record.version}"); fetch it again and retry'
        )
    return record


def check_records_outcomes(principal: Principal, doing: str) -> None:
    """An end user saying money moved is not evidence that it did."""
    if not principal.records_outcomes:
        raise Forbidden(f"{doing}: {OUTCOMES_ARE_FOR_BACKENDS} do that")
