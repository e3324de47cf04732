from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from starlette.responses import Response

from app.api.idempotency import IdempotencyDep
from app.api.problems import problem_responses
from app.api.responses import model_response, parse_if_match, refund_response
from app.api.v1.payments import IfMatch, PaymentIdPath
from app.core.pagination import Keyset, encode_cursor
from app.dependencies.auth import CurrentUser, WritingUser
from app.dependencies.database import UnitOfWorkDep
from app.schemas.refund import RefundCreate, RefundListQuery, RefundPage, RefundRecord, RefundStatusUpdate
from app.services.refunds import RefundService

router = APIRouter(
    prefix="/api/v1/payments/{id}/refunds", tags=["refunds"], responses=problem_responses(401, 404, 422, 503)
)

REFUND_ETAG: dict[str, object] = {
    "ETag": {"description": "The refund's version, for If-Match", "schema": {"type": "string"}}
}
LOCATION_HEADER: dict[str, object] = {"Location": {"description": "The refund's URL", "schema": {"type": "string"}}}


def single(
    status_code: int = 200, *errors: int, headers: dict[str, object] = REFUND_ETAG
) -> dict[int | str, dict[str, object]]:
    """OpenAPI responses of a route that answers with one refund and its ETag."""
    return {status_code: {"headers": headers}, **problem_responses(*errors)}


RefundIdPath = Annotated[int, Path(ge=1, le=2**63 - 1, description="The refund's id in this service")]


def refund_location(refund: RefundRecord) -> str:
    return f"/api/v1/payments/{refund.payment_id}/refunds/{refund.id}"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RefundRecord,
    responses=single(201, 400, 403, 409, 413, 429, headers={**REFUND_ETAG, **LOCATION_HEADER}),
    summary="Record a refund of a succeeded payment (services, admins); Idempotency-Key supported",
)
async def create_refund(
    id: PaymentIdPath, body: RefundCreate, user: WritingUser, uow: UnitOfWorkDep, idempotency: IdempotencyDep
) -> Response:
    async def work() -> Response:
        refund = await RefundService(uow).create(user, id, body)
        return refund_response(refund, status.HTTP_201_CREATED, location=refund_location(refund))

    return await idempotency.run(work)


@router.get("", response_model=RefundPage, summary="The payment's refunds, oldest first, 100 at most per page")
async def list_refunds(
    id: PaymentIdPath, query: Annotated[RefundListQuery, Query()], user: CurrentUser, uow: UnitOfWorkDep
) -> Response:
    page = await RefundService(uow).list(user, id, query)
    last = page.rows[-1] if page.rows and page.has_more else None
    cursor = encode_cursor(Keyset(last.created_at, last.id)) if last is not None else None
    return model_response(RefundPage(items=page.rows, next_cursor=cursor))


@router.get("/{refund}", response_model=RefundRecord, responses=single(200), summary="One refund")
async def get_refund(id: PaymentIdPath, refund: RefundIdPath, user: CurrentUser, uow: UnitOfWorkDep) -> Response:
    return refund_response(await RefundService(uow).get(user, id, refund))


@router.patch(
    "/{refund}/status",
    response_model=RefundRecord,
    responses=single(200, 400, 403, 409, 412, 413, 429),
    summary="Report a pending refund's outcome (services, admins); Idempotency-Key and If-Match supported",
)
async def change_refund_status(
    id: PaymentIdPath,
    refund: RefundIdPath,
    body: RefundStatusUpdate,
    user: WritingUser,
    uow: UnitOfWorkDep,
    idempotency: IdempotencyDep,
    if_match: IfMatch = None,
) -> Response:
    async def work() -> Response:
        changed = await RefundService(uow).change_status(user, id, refund, body, parse_if_match(if_match))
        return refund_response(changed)

    return await idempotency.run(work)
