"""One pure-ASGI middleware for what every request needs: its X-Request-ID, one structured log
line, and its metrics. (Pure ASGI: BaseHTTPMiddleware would cost a task and a stream per request.)"""

import itertools
import logging
import os
import re
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import render_domain_error
from app.core.errors import PayloadTooLarge
from app.core.logging import request_id_var
from app.core.metrics import observe_request

REQUEST_ID_HEADER = "X-Request-ID"
# Generated request ids: random per process, then counted (unique without a syscall per request).
_REQUEST_ID_PREFIX = os.urandom(10).hex()
_request_numbers = itertools.count(1)
_SANE_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")

access_logger = logging.getLogger("app.access")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE_REQUEST_ID.match(text) else None
    return None


class RequestObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_request_id(scope) or f"{_REQUEST_ID_PREFIX}{next(_request_numbers):012x}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        context = request_id_var.set(request_id)
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            duration = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            observe_request(method, template, status, duration)
            access_logger.info(
                "request",
                extra={
                    "method": method,
                    "route": template,
                    "status": status,
                    "duration_ms": round(duration * 1000, 2),
                    "user_id": state.get("user_id"),
                },
            )
            request_id_var.reset(context)


class BodySizeLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413, whether announced by Content-Length or
    streamed in chunks, before the app parses (or stores) any of it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await render_domain_error(self._too_large())(scope, receive, send)
                return
            chunked = chunked or (name == b"transfer-encoding" and b"chunked" in value.lower())
        if not chunked:
            # No body, or one bounded by its Content-Length (which the server holds it to).
            await self.app(scope, receive, send)
            return
        # A chunked body has no announced size: read it here, up to the limit, then hand it on.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending the whole body: nothing to serve
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await render_domain_error(self._too_large())(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is larger than {self.max_bytes} bytes")
