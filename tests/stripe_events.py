"""Stripe-shaped event payloads (fixtures in tests/fixtures/stripe) and Stripe's signing scheme."""

import copy
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

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
