from fastapi import APIRouter

from app.api.v1 import payments, webhooks

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(payments.router)
api_router.include_router(webhooks.router)
