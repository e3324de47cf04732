from typing import Annotated

from fastapi import Depends

from app.dependencies.database import SessionDep
from app.services.payments import PaymentService


async def get_payment_service(session: SessionDep) -> PaymentService:
    return PaymentService(session)


PaymentServiceDep = Annotated[PaymentService, Depends(get_payment_service)]
