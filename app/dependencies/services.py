from typing import Annotated

from fastapi import Depends, Request

from app.dependencies.database import SessionDep
from app.services.payments import PaymentService


async def get_payment_service(request: Request, session: SessionDep) -> PaymentService:
    return PaymentService(session, request_id=request.state.request_id)


PaymentServiceDep = Annotated[PaymentService, Depends(get_payment_service)]
