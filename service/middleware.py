"""Pure ASGI middleware: the request body limit and per-request Prometheus metrics."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError
from srserve.schemas import ErrorInfo, ErrorResponse

if TYPE_CHECKING:
    from service.metrics import ServiceMetrics


class BodyTooLargeError(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "upload_too_large",
            f"the request body is over the limit of {limit} bytes",
            {"limit_bytes": limit},
        )


class BodySizeLimitMiddleware:
    """Refuse bodies over `max_bytes` without buffering them: a declared Content-Length over the limit
    is answered 413 before the app reads a byte; a chunked body is counted as it streams in and the
    request is aborted with 413 the moment it passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(send)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            # normally the app's exception handler answers; this covers a raise outside it
            if started:
                raise
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = (
            ErrorResponse(
                error=ErrorInfo(
                    code="upload_too_large",
                    message=f"the request body is over the limit of {self.max_bytes} bytes",
                ),
                detail={"limit_bytes": self.max_bytes},
            )
            .model_dump_json()
            .encode()
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _long_poll(scope: Scope) -> bool:
    try:
        waits = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("wait", [])
        return any(float(w) > 0 for w in waits)
    except ValueError:
        return False


class MetricsMiddleware:
    """Counts requests by route template (not raw path: ids would explode the label set), method and
    status, and observes latency."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            if path == "/v1/jobs/{job_id}" and _long_poll(scope):
                path += "?wait"  # held until the job ends: its own latency series, not a slow read
            method = scope.get("method", "?")
            self.metrics.requests.labels(path, method, str(status)).inc()
            self.metrics.latency.labels(path, method).observe(time.perf_counter() - start)
