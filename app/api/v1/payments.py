from math import ceil
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, status
from starlette.responses import Response

from app.api.idempotency import IdempotencyDep, NewPaymentIdempotencyDep
from app.api.problems import problem_responses
from app.api.responses import model_response, parse_if_match, payment_response
from app.core.pagination import Keyset, encode_cursor
from app.dependencies.auth import AdminUser, CurrentUser, WritingUser
from app.dependencies.database import UnitOfWorkDep
from app.repositories.payments import Page
from app.schemas.fields import GatewayId, Reference
from app.schemas.payment import (
    AdminPaymentListQuery,
    BookingPaymentPage,
    BookingPaymentQuery,
    PaymentCreate,
    PaymentListQuery,
    PaymentPage,
    PaymentRecord,
    PaymentStatusUpdate,
    PaymentUpdate,
    StatusChange,
)
from app.services.payments import PaymentService

router = APIRouter(prefix="/api/v1/payments", tags=["payments"], responses=problem_responses(401, 422, 503))

PaymentIdPath = Annotated[int, Path(ge=1, le=2**63 - 1, description="The payment's id in this service")]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='The ETag of the payment as you last read it (e.g. "3"); a stale one gets 412',
    ),
]
ETAG_HEADER = {"ETag": {"description": "The payment's version, for If-Match", "schema": {"type": "string"}}}


def single(status_code: int = 200, *errors: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI responses of a route that answers with one payment and its ETag."""
    return {status_code: {"headers": ETAG_HEADER}, **problem_responses(*errors)}


def _next_cursor(page: Page) -> str | None:
    """The position of the page's last row, when more rows follow."""
    last = page.rows[-1] if page.rows and page.has_more else None
    return encode_cursor(Keyset(last.created_at, last.id)) if last is not None else None


def _page(page: Page, query: PaymentListQuery) -> PaymentPage:
    return PaymentPage(
        items=[PaymentRecord.model_validate(row) for row in page.rows],
        total=page.total,
        page=query.page if query.cursor is None else None,
        size=query.size,
        pages=ceil(page.total / query.size) if page.total is not None else None,
        next_cursor=_next_cursor(page),
    )


# First: routes are tried in order, and this is the busiest one.
@router.get("/{id}", response_model=PaymentRecord, responses=single(200, 404), summary="One payment")
async def get_payment(id: PaymentIdPath, user: CurrentUser, uow: UnitOfWorkDep) -> Response:
    return payment_response(await PaymentService(uow).get(user, id))


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentRecord,
    responses=single(201, 400, 403, 409, 413, 429),
    summary="Record a payment (owner: the caller); Idempotency-Key supported",
)
async def create_payment(
    body: PaymentCreate, user: WritingUser, uow: UnitOfWorkDep, idempotency: NewPaymentIdempotencyDep
) -> Response:
    async def work() -> Response:
        payment = await PaymentService(uow).create(user, body, idempotency.new_payment_key())
        return idempotency.stored_response() or payment_response(payment, status.HTTP_201_CREATED)

    return await idempotency.run(work)


METADATA_FILTER_DOC = (
    "Besides the parameters below, `metadata[<key>]=<value>` (repeatable; key up to 40 characters, value "
    "up to 500) keeps the payments whose metadata has that key with that value."
)


@router.get(
    "/", response_model=PaymentPage, summary="The caller's payments, newest first", description=METADATA_FILTER_DOC
)
async def list_payments(query: Annotated[PaymentListQuery, Query()], user: CurrentUser, uow: UnitOfWorkDep) -> Response:
    return model_response(_page(await PaymentService(uow).list_own(user, query), query))


@router.get(
    "/admin/all",
    response_model=PaymentPage,
    responses=problem_responses(403),
    summary="Every user's payments (admins only)",
    description=METADATA_FILTER_DOC,
)
async def list_all_payments(
    query: Annotated[AdminPaymentListQuery, Query()], admin: AdminUser, uow: UnitOfWorkDep
) -> Response:
    return model_response(_page(await PaymentService(uow).list_all(query), query))


@router.get(
    "/payment-gateway/{payment_id}",
    response_model=PaymentRecord,
    responses=single(200, 404),
    summary="A payment by the gateway's payment id",
)
async def get_payment_by_gateway_id(
    payment_id: Annotated[GatewayId, Path()], user: CurrentUser, uow: UnitOfWorkDep
) -> Response:
    return payment_response(await PaymentService(uow).get_by_gateway_id(user, payment_id))


@router.get(
    "/booking/{booking_id}",
    response_model=BookingPaymentPage,
    summary="The caller's payments for a booking, oldest first, 100 at most per page (services, admins: everyone's)",
)
async def list_payments_for_booking(
    booking_id: Annotated[Reference, Path()],
    query: Annotated[BookingPaymentQuery, Query()],
    user: CurrentUser,
    uow: UnitOfWorkDep,
) -> Response:
    page = await PaymentService(uow).list_for_booking(user, booking_id, query)
    return model_response(BookingPaymentPage(items=page.rows, next_cursor=_next_cursor(page)))


@router.get(
    "/{id}/history",
    response_model=list[StatusChange],
    responses=problem_responses(404),
    summary="The payment's status changes, oldest first (owner or admin)",
)
async def get_payment_history(id: PaymentIdPath, user: CurrentUser, uow: UnitOfWorkDep) -> list[StatusChange]:
    return await PaymentService(uow).history(user, id)


@router.put(
    "/{id}",
    response_model=PaymentRecord,
    responses=single(200, 403, 404, 409, 412, 413, 429),
    summary="Change a payment's mutable fields (only those sent); If-Match supported",
)
async def update_payment(
    id: PaymentIdPath, body: PaymentUpdate, user: WritingUser, uow: UnitOfWorkDep, if_match: IfMatch = None
) -> Response:
    return payment_response(await PaymentService(uow).update(user, id, body, parse_if_match(if_match)))


@router.patch(
    "/{id}/status",
    response_model=PaymentRecord,
    responses=single(200, 400, 403, 404, 409, 412, 413, 429),
    summary="Move a payment to another status; Idempotency-Key and If-Match supported",
)
async def change_payment_status(
    id: PaymentIdPath,
    body: PaymentStatusUpdate,
    user: WritingUser,
    uow: UnitOfWorkDep,
    idempotency: IdempotencyDep,
    if_match: IfMatch = None,
) -> Response:
    async def work() -> Response:
        return payment_response(
            await PaymentService(uow).change_status(user, id, body.payment_status, parse_if_match(if_match))
        )

    return await idempotency.run(work)


@router.delete(
    "/{id}",
    response_model=PaymentRecord,
    responses=single(200, 400, 403, 404, 409, 412, 413, 429),
    summary="Cancel a payment (it is kept, with status canceled); Idempotency-Key and If-Match supported",
)
async def cancel_payment(
    id: PaymentIdPath,
    user: WritingUser,
    uow: UnitOfWorkDep,
    idempotency: IdempotencyDep,
    if_match: IfMatch = None,
) -> Response:
    async def work() -> Response:
        return payment_response(await PaymentService(uow).cancel(user, id, parse_if_match(if_match)))

    return await idempotency.run(work)
