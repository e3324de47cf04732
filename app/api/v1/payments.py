from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from app.api.problems import problem_responses
from app.dependencies.auth import AdminUser, CurrentUser
from app.dependencies.services import PaymentServiceDep
from app.models import Payment
from app.schemas.fields import GatewayId, Reference
from app.schemas.payment import (
    AdminPaymentListQuery,
    PaymentCreate,
    PaymentListQuery,
    PaymentPage,
    PaymentRead,
    PaymentStatusUpdate,
    PaymentUpdate,
)

router = APIRouter(prefix="/payments", tags=["payments"], responses=problem_responses(401, 422))

PaymentIdPath = Annotated[int, Path(ge=1, le=2**63 - 1, description="The payment's id in this service")]


def _page(items: list[Payment], total: int, query: PaymentListQuery) -> PaymentPage:
    return PaymentPage.build([PaymentRead.model_validate(item) for item in items], total, query.page, query.size)


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentRead,
    responses=problem_responses(409),
    summary="Record a payment (owner: the caller)",
)
async def create_payment(body: PaymentCreate, user: CurrentUser, service: PaymentServiceDep) -> Payment:
    return await service.create(user, body)


@router.get("/", response_model=PaymentPage, summary="The caller's payments, newest first")
async def list_payments(
    query: Annotated[PaymentListQuery, Query()], user: CurrentUser, service: PaymentServiceDep
) -> PaymentPage:
    items, total = await service.list_own(user, query)
    return _page(items, total, query)


@router.get(
    "/admin/all",
    response_model=PaymentPage,
    responses=problem_responses(403),
    summary="Every user's payments (admins only)",
)
async def list_all_payments(
    query: Annotated[AdminPaymentListQuery, Query()], admin: AdminUser, service: PaymentServiceDep
) -> PaymentPage:
    items, total = await service.list_all(query)
    return _page(items, total, query)


@router.get(
    "/payment-gateway/{payment_id}",
    response_model=PaymentRead,
    responses=problem_responses(404),
    summary="A payment by the gateway's payment id",
)
async def get_payment_by_gateway_id(
    payment_id: Annotated[GatewayId, Path()], user: CurrentUser, service: PaymentServiceDep
) -> Payment:
    return await service.get_by_gateway_id(user, payment_id)


@router.get(
    "/booking/{booking_id}",
    response_model=list[PaymentRead],
    summary="The caller's payments for a booking, oldest first (admins: everyone's)",
)
async def list_payments_for_booking(
    booking_id: Annotated[Reference, Path()], user: CurrentUser, service: PaymentServiceDep
) -> list[Payment]:
    return await service.list_for_booking(user, booking_id)


@router.get("/{id}", response_model=PaymentRead, responses=problem_responses(404), summary="One payment")
async def get_payment(id: PaymentIdPath, user: CurrentUser, service: PaymentServiceDep) -> Payment:
    return await service.get(user, id)


@router.put(
    "/{id}",
    response_model=PaymentRead,
    responses=problem_responses(404, 409),
    summary="Change a payment's mutable fields (only those sent)",
)
async def update_payment(
    id: PaymentIdPath, body: PaymentUpdate, user: CurrentUser, service: PaymentServiceDep
) -> Payment:
    return await service.update(user, id, body)


@router.patch(
    "/{id}/status",
    response_model=PaymentRead,
    responses=problem_responses(404, 409),
    summary="Move a payment to another status",
)
async def change_payment_status(
    id: PaymentIdPath, body: PaymentStatusUpdate, user: CurrentUser, service: PaymentServiceDep
) -> Payment:
    return await service.change_status(user, id, body.payment_status)


@router.delete(
    "/{id}",
    response_model=PaymentRead,
    responses=problem_responses(404, 409),
    summary="Cancel a payment (it is kept, with status canceled)",
)
async def cancel_payment(id: PaymentIdPath, user: CurrentUser, service: PaymentServiceDep) -> Payment:
    return await service.cancel(user, id)
