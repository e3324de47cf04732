"""Domain errors. Each carries its HTTP status and RFC 9457 problem type; one handler renders them."""

from typing import ClassVar

# Relative URI references (RFC 9457 §3.1.1); the README lists every problem type.
PROBLEM_TYPE_BASE = "/problems/"


class DomainError(Exception):
    status_code: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @classmethod
    def problem_type(cls) -> str:
        return PROBLEM_TYPE_BASE + cls.slug

    def headers(self) -> dict[str, str]:
        return {}

    def field_errors(self) -> list[tuple[str, str, str]]:
        """(location, message, type) of each invalid field, for a 422's `errors`."""
        return []

    def extensions(self) -> dict[str, str]:
        """Extension members of the problem (RFC 9457 §3.2), e.g. the amount still refundable."""
        return {}


class NotAuthenticated(DomainError):
    status_code = 401
    slug = "not-authenticated"
    title = "Not authenticated"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(DomainError):
    status_code = 403
    slug = "forbidden"
    title = "Forbidden"


class PaymentNotFound(DomainError):
    status_code = 404
    slug = "payment-not-found"
    title = "Payment not found"


class DuplicatePayment(DomainError):
    status_code = 409
    slug = "duplicate-payment"
    title = "Duplicate payment"


class IllegalStatusTransition(DomainError):
    status_code = 409
    slug = "illegal-status-transition"
    title = "Illegal status transition"


class ImmutableField(DomainError):
    status_code = 409
    slug = "immutable-field"
    title = "Field cannot be changed"


class InvalidPayment(DomainError):
    """A request that is well-formed but breaks a rule that needs the stored payment to check."""

    status_code = 422
    slug = "invalid-payment"
    title = "Invalid payment"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem

    def field_errors(self) -> list[tuple[str, str, str]]:
        return [(f"body.{self.field}", self.problem, "value_error")]


class InvalidRefund(InvalidPayment):
    slug = "invalid-refund"
    title = "Invalid refund"


class EventNotFound(DomainError):
    status_code = 404
    slug = "event-not-found"
    title = "Event not found"


class RefundNotFound(DomainError):
    status_code = 404
    slug = "refund-not-found"
    title = "Refund not found"


class PaymentNotRefundable(DomainError):
    status_code = 409
    slug = "payment-not-refundable"
    title = "Payment cannot be refunded"


class RefundExceedsRefundable(DomainError):
    status_code = 409
    slug = "refund-exceeds-refundable"
    title = "Refund exceeds the refundable amount"

    def __init__(self, detail: str, amount_refundable: str) -> None:
        super().__init__(detail)
        self.amount_refundable = amount_refundable

    def extensions(self) -> dict[str, str]:
        return {"amount_refundable": self.amount_refundable}


class RefundPending(DomainError):
    status_code = 409
    slug = "refund-pending"
    title = "A refund is pending"


class DuplicateRefund(DomainError):
    status_code = 409
    slug = "duplicate-refund"
    title = "Duplicate refund"


class PreconditionFailed(DomainError):
    status_code = 412
    slug = "precondition-failed"
    title = "Precondition failed"


class InvalidIdempotencyKey(DomainError):
    status_code = 400
    slug = "invalid-idempotency-key"
    title = "Invalid Idempotency-Key"


class IdempotencyKeyReused(DomainError):
    status_code = 422
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused"


KEY_TAKEN_OVER = (
    "This request took longer than the Idempotency-Key's lock timeout and a retry took the key over; "
    "nothing was stored by this request"
)


class IdempotencyKeyInFlight(DomainError):
    status_code = 409
    slug = "idempotency-key-in-flight"
    title = "Request with this Idempotency-Key in progress"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class InvalidWebhook(DomainError):
    status_code = 400
    slug = "invalid-webhook"
    title = "Invalid webhook"


class WebhooksNotConfigured(DomainError):
    """503 so the provider keeps retrying until an operator sets the secret."""

    status_code = 503
    slug = "webhooks-not-configured"
    title = "Webhooks not configured"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "60"}


class DatabaseUnavailable(DomainError):
    status_code = 503
    slug = "database-unavailable"
    title = "Database unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "2"}


class PayloadTooLarge(DomainError):
    status_code = 413
    slug = "payload-too-large"
    title = "Payload too large"


class IdentityProviderUnavailable(DomainError):
    status_code = 503
    slug = "identity-provider-unavailable"
    title = "Identity provider unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class TooManyWrites(DomainError):
    status_code = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class BodyTimeout(DomainError):
    status_code = 408
    slug = "request-timeout"
    title = "Request timeout"

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}
