"""One pure-ASGI middleware for what every request needs: its X-Request-ID, one structured log
line, and its metrics. (Pure ASGI: BaseHTTPMiddleware would cost a task and a stream per request.)"""

import asyncio
import itertools
import logging
import os
import re
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import render_domain_error
from app.core.errors import BodyTimeout, DomainError, PayloadTooLarge
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


class RequestBodyMiddleware:
    """Reads a request's whole body before the app sees the request, so that no route, dependency
    or database slot ever waits for a client: at most `max_bytes` (else 413, whether announced by
    Content-Length or streamed in chunks) within `timeout` seconds of the first read (else 408). A
    client that goes away mid-body gets no answer and costs one INFO line."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    await render_domain_error(self._too_large())(scope, receive, send)
                    return
                has_body = has_body or value not in (b"0", b"")
            elif name == b"transfer-encoding":
                has_body = has_body or b"chunked" in value.lower()
        if not has_body:  # GETs and the like: nothing to wait for, nothing added
            await self.app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.timeout):
                body = await self._read(receive)
        except TimeoutError:
            error: DomainError = BodyTimeout(f"The request body did not arrive within {self.timeout:g} s")
            await render_domain_error(error)(scope, receive, send)
            return
        except PayloadTooLarge as too_large:
            await render_domain_error(too_large)(scope, receive, send)
            return
        if body is None:
            access_logger.info("client disconnected before sending its whole body", extra={"method": scope["method"]})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body; None when the client disconnected first."""
        chunks = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks += message.get("body", b"")
            if len(chunks) > self.max_bytes:
                raise self._too_large()
            if not message.get("more_body", False):
                return bytes(chunks)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is larger than {self.max_bytes} bytes")
