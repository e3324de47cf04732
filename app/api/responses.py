"""Single-payment responses carry their version as a strong ETag; If-Match is parsed here."""

from pydantic import BaseModel
from starlette.responses import Response

from app.schemas.payment import PaymentRecord
from app.schemas.refund import RefundRecord
from app.services.access import ExpectedVersions

JSON_MEDIA_TYPE = "application/json"


def etag(version: int) -> str:
    return f'"{version}"'


def model_response(model: BaseModel) -> Response:
    """A response model serialized once (returning the model would have FastAPI dump, validate and
    serialize it again)."""
    return Response(model.__pydantic_serializer__.to_json(model), media_type=JSON_MEDIA_TYPE)


def payment_response(payment: PaymentRecord, status_code: int = 200) -> Response:
    """Serialize once, here, so an idempotent request can store exactly these bytes."""
    body = payment.__pydantic_serializer__.to_json(payment)
    return Response(body, status_code, headers={"ETag": etag(payment.version)}, media_type=JSON_MEDIA_TYPE)


def refund_response(refund: RefundRecord, status_code: int = 200, *, location: str | None = None) -> Response:
    headers = {"ETag": etag(refund.version)} | ({"Location": location} if location else {})
    body = refund.__pydantic_serializer__.to_json(refund)
    return Response(body, status_code, headers=headers, media_type=JSON_MEDIA_TYPE)


def parse_if_match(header: str | None) -> ExpectedVersions:
    """The versions an If-Match header accepts: None for no header or `*`; an unparsable tag
    matches nothing (so the request fails with 412 rather than running unconditionally)."""
    if header is None or header.strip() == "*":
        return None
    versions: set[int] = set()
    for tag in header.split(","):
        value = tag.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1]
        if value.isascii() and value.isdigit():
            versions.add(int(value))
    return versions
