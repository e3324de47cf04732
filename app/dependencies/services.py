from typing import Annotated

from fastapi import Depends, Request

from app.dependencies.database import ReadSessionDep, SessionDep
from app.repositories.payment_reads import PaymentReads
from app.services.payments import PaymentReader, PaymentService
from app.services.webhooks import StripeWebhookService


async def get_payment_service(request: Request, session: SessionDep) -> PaymentService:
    return PaymentService(session, request_id=request.state.request_id)


PaymentServiceDep = Annotated[PaymentService, Depends(get_payment_service)]


async def get_payment_reader(request: Request) -> PaymentReader:
    """The GET routes' service, on plain autocommit connections taken per query. Not a yield
    dependency: this is the hot path, and FastAPI's exit-stack machinery for those costs time."""
    return PaymentReader(PaymentReads(request.app.state.read_driver_connection))


PaymentReaderDep = Annotated[PaymentReader, Depends(get_payment_reader)]


async def get_stripe_webhook_service(request: Request, session: SessionDep) -> StripeWebhookService:
    return StripeWebhookService(session, request_id=request.state.request_id)


StripeWebhookServiceDep = Annotated[StripeWebhookService, Depends(get_stripe_webhook_service)]


async def get_webhook_reader(session: ReadSessionDep) -> StripeWebhookService:
    return StripeWebhookService(session)


WebhookReaderDep = Annotated[StripeWebhookService, Depends(get_webhook_reader)]
