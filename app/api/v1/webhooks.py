from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from pydantic import ValidationError

from app.api.problems import problem_responses
from app.core.errors import InvalidWebhook, WebhooksNotConfigured
from app.core.webhook_signatures import InvalidSignature, verify_stripe_signature
from app.dependencies.auth import AdminUser
from app.dependencies.database import UnitOfWorkDep
from app.schemas.webhook import StripeEvent, WebhookAck, WebhookEventPage, WebhookEventQuery, WebhookEventRecord
from app.services.webhooks import StripeWebhookService

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


@router.post(
    "/stripe",
    response_model=WebhookAck,
    responses=problem_responses(400, 413, 503),
    summary="Stripe events (authenticated by Stripe-Signature, not by a JWT)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "description": "A Stripe event"}}},
        }
    },
)
async def receive_stripe_event(
    request: Request,
    uow: UnitOfWorkDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookAck:
    settings = request.app.state.settings
    secrets = settings.stripe_webhook_secrets()
    if not secrets:
        raise WebhooksNotConfigured("STRIPE_WEBHOOK_SECRET is not set")
    payload = await request.body()
    try:  # the raw bytes are verified before anything parses them
        verify_stripe_signature(payload, stripe_signature, secrets, settings.stripe_webhook_tolerance_seconds)
    except InvalidSignature as exc:
        raise InvalidWebhook(str(exc)) from exc
    try:
        event = StripeEvent.model_validate_json(payload)
    except ValidationError as exc:
        raise InvalidWebhook("The body is not a Stripe event") from exc
    result = await StripeWebhookService(uow).handle(event)
    return WebhookAck(event_id=event.id, outcome=result.outcome, duplicate=result.duplicate)


@router.get(
    "/events",
    response_model=WebhookEventPage,
    responses=problem_responses(401, 403, 422, 503),
    summary="Recorded provider events, newest first (admins only)",
)
async def list_webhook_events(
    query: Annotated[WebhookEventQuery, Query()], admin: AdminUser, uow: UnitOfWorkDep
) -> WebhookEventPage:
    items, total = await StripeWebhookService(uow).list_events(outcome=query.outcome, page=query.page, size=query.size)
    return WebhookEventPage.build(
        [WebhookEventRecord.model_validate(item) for item in items], total, query.page, query.size
    )
