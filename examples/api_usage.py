"""Walk through the payments API against a running server, checking every status code.

    make run                                  # in one terminal
    .venv/bin/python examples/api_usage.py    # in another, from the repository root

BASE_URL  the server (default http://127.0.0.1:8002)
TOKEN          an end user's bearer token (creates, reads and cancels their payments); when unset,
               a development token for user 123 is minted with the SECRET_KEY/ALGORITHM of this
               checkout's settings (environment or .env), which must be the ones the server uses.
SERVICE_TOKEN  a trusted backend's token (service role), which records what the gateway did
               (processing, succeeded, a refund); when unset, one is minted for backend 900 the same way.

Exits 0 when every step answered as expected, 1 at the first step that did not.
"""

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:8002").rstrip("/")
PAYMENTS = "/api/v1/payments"
DEMO_USER_ID = 123
DEMO_BACKEND_ID = 900


class StepFailed(Exception):
    pass


def dev_token(*, service: bool = False) -> str:
    """A token signed like the server's own (`make token USER=123`, `make token USER=900 SERVICE=1`)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for `app`
    from app.core.config import default_to_development, get_settings
    from app.core.security import create_access_token

    default_to_development()  # as `make run` and `make token` do
    settings = get_settings()
    if service:
        return create_access_token(DEMO_BACKEND_ID, settings, roles=[settings.service_role])
    return create_access_token(DEMO_USER_ID, settings)


def expect(response: httpx.Response, status: int, step: str) -> Any:
    """The response's JSON body, after checking its status code."""
    if response.status_code != status:
        raise StepFailed(
            f"{step}: expected {status}, got {response.status_code} "
            f"({response.request.method} {response.request.url})\n{response.text}"
        )
    print(f"ok  {response.status_code} {response.request.method} {response.request.url.raw_path.decode()}  {step}")
    return response.json()


def show(body: Any) -> None:
    print(json.dumps(body, indent=2))


def run(client: httpx.Client, backend: httpx.Client) -> None:
    run_id = uuid.uuid4().hex[:12]

    # 1. Record a payment. Send amounts as strings: a JSON number passes through a double.
    new_payment = {
        "payment_id": f"pi_example_{run_id}",
        "provider": "stripe",
        "currency": "USD",
        "amount_total": "149.90",
        "payment_method_types": ["card"],
        "booking_id": f"bk_{run_id}",
        "customer_email": "guest@example.com",
        "description": "2 nights, example booking",
    }
    payment = expect(client.post(f"{PAYMENTS}/", json=new_payment), 201, "create a payment")
    show(payment)
    payment_id = payment["id"]
    if payment["payment_status"] != "pending" or payment["amount_total"] != "149.90":
        raise StepFailed(f"unexpected new payment: {payment}")

    # 2. Read it back.
    fetched = expect(client.get(f"{PAYMENTS}/{payment_id}"), 200, "get it by id")
    if fetched["payment_id"] != new_payment["payment_id"]:
        raise StepFailed(f"got another payment: {fetched}")

    # 3. List the caller's payments with filters (newest first, paginated).
    page = expect(
        client.get(f"{PAYMENTS}/", params={"payment_status": "pending", "provider": "stripe", "size": 5}),
        200,
        "list pending stripe payments",
    )
    print(f"    total={page['total']} page={page['page']} size={page['size']} pages={page['pages']}")
    if payment_id not in [item["id"] for item in page["items"]]:
        raise StepFailed("the new payment is not on the first page of pending stripe payments")

    # 4. The gateway reports progress: a trusted backend (service role) moves it pending -> processing
    # -> succeeded. An end user's token may only cancel its own pending payments.
    for target in ("processing", "succeeded"):
        moved = expect(
            backend.patch(f"{PAYMENTS}/{payment_id}/status", json={"payment_status": target}),
            200,
            f"move to {target}",
        )
        if moved["payment_status"] != target:
            raise StepFailed(f"status is {moved['payment_status']}, expected {target}")

    # 5. Errors are application/problem+json: an illegal move (succeeded -> pending) is a 409 ...
    response = backend.patch(f"{PAYMENTS}/{payment_id}/status", json={"payment_status": "pending"})
    problem = expect(response, 409, "illegal move succeeded -> pending is refused")
    if response.headers["content-type"] != "application/problem+json":
        raise StepFailed(f"error content-type is {response.headers['content-type']}")
    show(problem)

    # ... and so is recording the same gateway payment_id twice.
    duplicate = expect(client.post(f"{PAYMENTS}/", json=new_payment), 409, "duplicate payment_id is refused")
    print(f"    {duplicate['type']}: {duplicate['detail']}")

    # 6. The guest cancels one of the two nights: a partial refund, recorded by the backend that
    # asked the gateway for it (pending until the gateway confirms), then its outcome.
    refund = expect(
        backend.post(
            f"{PAYMENTS}/{payment_id}/refunds",
            json={"amount": "74.95", "reason": "booking_canceled", "refund_id": f"re_example_{run_id}"},
            headers={"Idempotency-Key": f"refund-{run_id}"},
        ),
        201,
        "record a partial refund",
    )
    show(refund)
    settled = expect(
        backend.patch(f"{PAYMENTS}/{payment_id}/refunds/{refund['id']}/status", json={"status": "succeeded"}),
        200,
        "the gateway confirmed it",
    )
    after = expect(client.get(f"{PAYMENTS}/{payment_id}"), 200, "read the payment after the refund")
    amounts = (after["payment_status"], after["amount_refunded"], after["amount_refundable"], settled["status"])
    print(f"    status, refunded, refundable, refund: {amounts}")
    if amounts != ("succeeded", "74.95", "74.95", "succeeded"):
        raise StepFailed(f"unexpected amounts after a partial refund: {amounts}")
    refunds = expect(client.get(f"{PAYMENTS}/{payment_id}/refunds"), 200, "list the payment's refunds")["items"]
    if [item["id"] for item in refunds] != [refund["id"]]:
        raise StepFailed(f"the refund list is {refunds}")
    too_much = expect(
        backend.post(f"{PAYMENTS}/{payment_id}/refunds", json={"amount": "100.00"}), 409, "refunding too much"
    )
    print(f"    {too_much['type']}: amount_refundable={too_much['amount_refundable']}")

    # 7. A second payment, canceled with DELETE (the record is kept, with status canceled).
    second = expect(
        client.post(
            f"{PAYMENTS}/",
            json={
                "checkout_session_id": f"cs_example_{run_id}",
                "provider": "paypal",
                "currency": "jpy",
                "amount_total": "15000",
                "booking_id": f"bk_{run_id}",
            },
        ),
        201,
        "create a second payment (JPY, no decimals)",
    )
    canceled = expect(client.delete(f"{PAYMENTS}/{second['id']}"), 200, "cancel it")
    if canceled["payment_status"] != "canceled":
        raise StepFailed(f"status after DELETE is {canceled['payment_status']}")

    # 8. Both payments of the booking, oldest first (100 a page; `next_cursor` leads to the rest).
    booking = expect(client.get(f"{PAYMENTS}/booking/bk_{run_id}"), 200, "list the booking's payments")["items"]
    summary = [(item["id"], item["payment_status"], item["currency"], item["amount_total"]) for item in booking]
    print(f"    {summary}")
    if [item["id"] for item in booking] != [payment_id, second["id"]]:
        raise StepFailed("the booking does not list both payments, oldest first")


def main() -> int:
    token = os.environ.get("TOKEN") or dev_token()
    service_token = os.environ.get("SERVICE_TOKEN") or dev_token(service=True)
    try:
        with (
            httpx.Client(base_url=BASE_URL, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client,
            httpx.Client(
                base_url=BASE_URL, headers={"Authorization": f"Bearer {service_token}"}, timeout=10
            ) as backend,
        ):
            expect(client.get("/health"), 200, "service is up")
            run(client, backend)
    except StepFailed as failure:
        print(f"FAILED {failure}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"FAILED cannot talk to {BASE_URL}: {exc}", file=sys.stderr)
        return 1
    print("all steps answered as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
