from typing import Annotated

from fastapi import Depends, Request

from app.dependencies.database import ReadSessionDep, SessionDep
from app.services.payments import PaymentService
from app.services.webhooks import StripeWebhookService


async def get_payment_service(request: Request, session: SessionDep) -> PaymentService:
    return PaymentService(session, request_id=request.state.request_id)


PaymentServiceDep = Annotated[PaymentService, Depends(get_payment_service)]


async def get_payment_reader(session: ReadSessionDep) -> PaymentService:
    return PaymentService(session)


# The payment service on a read-only (autocommit) session, for GET routes.
PaymentReaderDep = Annotated[PaymentService, Depends(get_payment_reader)]


async def get_stripe_webhook_service(request: Request, session: SessionDep) -> StripeWebhookService:
    return StripeWebhookService(session, request_id=request.state.request_id)


StripeWebhookServiceDep = Annotated[StripeWebhookService, Depends(get_stripe_webhook_service)]


async def get_webhook_reader(session: ReadSessionDep) -> StripeWebhookService:
    return StripeWebhookService(session)


WebhookReaderDep = Annotated[StripeWebhookService, Depends(get_webhook_reader)]
