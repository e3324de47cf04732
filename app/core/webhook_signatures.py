"""Stripe-Signature verification with the official `stripe` library, plus the checks it leaves out:
several secrets (for rotation) and timestamps from the future."""

import time

from stripe import SignatureVerificationError, WebhookSignature


class InvalidSignature(Exception):
    pass


def _timestamp(header: str) -> int:
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            return int(value)
    raise InvalidSignature("Stripe-Signature has no timestamp")


def verify_stripe_signature(payload: bytes, header: str | None, secrets: list[str], tolerance: int) -> None:
    """Raise InvalidSignature unless `payload` was signed with one of `secrets` within `tolerance`
    seconds of now (in either direction)."""
    if not header:
        raise InvalidSignature("Missing Stripe-Signature header")
    reason = "No valid signature for this payload"
    for secret in secrets:
        try:
            WebhookSignature.verify_header(payload, header, secret, tolerance)
        except SignatureVerificationError as exc:
            reason = str(exc.user_message or exc)  # e.g. "Timestamp outside the tolerance zone"
            continue
        except ValueError as exc:  # a body that is not UTF-8 cannot have been signed by Stripe
            raise InvalidSignature("Body is not valid UTF-8") from exc
        # The library rejects old timestamps only; a timestamp from the future is refused here.
        if _timestamp(header) > time.time() + tolerance:
            raise InvalidSignature("Stripe-Signature timestamp is in the future")
        return
    raise InvalidSignature(reason)
