"""Stripe-shaped event payloads (fixtures in tests/fixtures/stripe) and Stripe's signing scheme."""

import copy
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import STRIPE_SECRET

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"
_TEMPLATES = {
    "checkout.session": "checkout.session.completed.json",
    "payment_intent": "payment_intent.succeeded.json",
    "charge": "charge.refunded.json",
    # A Refund object: refund.created / .updated / .failed, and the older charge.refund.updated.
    "refund": "refund.created.json",
    "charge.refund": "refund.created.json",
}


def stripe_event(event_type: str, event_id: str, **object_fields: Any) -> dict[str, Any]:
    """A Stripe event of `event_type`, built from the fixture of its object kind."""
    kind = event_type.rsplit(".", 1)[0]
    template = _TEMPLATES["checkout.session" if kind.startswith("checkout.session") else kind]
    event: dict[str, Any] = copy.deepcopy(json.loads((FIXTURES / template).read_text()))
    event["id"] = event_id
    event["type"] = event_type
    event["data"]["object"].update(object_fields)
    return event


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header: t=<timestamp>,v1=<HMAC-SHA256 of "t.payload">."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    signature = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def signed_headers(payload: bytes, secret: str) -> dict[str, str]:
    """The headers Stripe sends with a delivery of `payload`, signed now."""
    return {"Stripe-Signature": sign(payload, secret), "Content-Type": "application/json"}


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


WEBHOOK_URL = "/api/v1/webhooks/stripe"


async def deliver(client: httpx.AsyncClient, event: dict[str, Any], secret: str = STRIPE_SECRET) -> httpx.Response:
    """A Stripe delivery of `event` to the webhook route, signed with `secret`."""
    payload = encode(event)
    return await client.post(WEBHOOK_URL, content=payload, headers=signed_headers(payload, secret))


def ack(response: httpx.Response, outcome: str, *, duplicate: bool = False) -> None:
    """The webhook answered 200 with this outcome."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["received"], body["outcome"], body["duplicate"]) == (True, outcome, duplicate)
