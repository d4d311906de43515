"""The gate in front of the /v1 API, as pure ASGI middleware so it answers before the body is read:
API key (401), per-key rate limit (429), and for submissions backpressure on the queue depth (429)
and the per-key daily quota (429). Redis being down here is a 503 + Retry-After like everywhere else.

Public without a key, always: `/`, `/static`, `/healthz`, `/readyz`, `/docs`, `/redoc`,
`/openapi.json`; `/metrics` unless SRSERVE_METRICS_REQUIRE_AUTH. Everything under `/v1/` (jobs,
results, `/v1/models`) takes a key when SRSERVE_AUTH_REQUIRED; when keys are optional a request
may still send one (then its jobs are private to that key), and a bad one is refused, never ignored.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import redis
from anyio import to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import ANONYMOUS, STATE_KEY, KeyStore, Principal
from service.backpressure import check_queue_depth
from service.ratelimit import DailyQuota, RateLimiter
from srserve.schemas import ErrorInfo, ErrorResponse

if TYPE_CHECKING:
    from service.deps import Services

log = logging.getLogger(__name__)


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 detail: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.detail = detail


class GuardMiddleware:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        self.settings = services.settings
        self.keys = KeyStore(services.redis)
        self.rates = RateLimiter(services.redis)
        self.quota = DailyQuota(services.redis)

    def _protected(self, path: str) -> bool:
        if path.startswith("/v1/"):
            return True
        return path == "/metrics" and self.settings.metrics_require_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "OPTIONS" or not self._protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        submitting = scope.get("method") == "POST"
        try:
            if token is None and not submitting:  # anonymous read: no Redis, so no thread hop
                principal, reserved = self._admit(token, submitting)
            else:
                principal, reserved = await to_thread.run_sync(self._admit, token, submitting)
        except Refusal as r:
            await _answer(send, r.status, r.code, r.message, r.headers, r.detail)
            return
        except redis.RedisError as exc:
            log.warning("Redis unavailable at the gate: %s", exc)
            await _answer(
                send, 503, "redis_unavailable", "the job store is unreachable; retry shortly",
                {"Retry-After": str(self.settings.retry_after_s)},
            )
            return
        scope.setdefault("state", {})[STATE_KEY] = principal
        if reserved is None:
            await self.app(scope, receive, send)
            return

        settled = False  # the reservation is either kept (a job was made) or refunded, once

        async def settle(created: bool) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            if created or principal.key is None:
                return
            try:  # the request made no job: the quota it reserved goes back
                await to_thread.run_sync(self.quota.refund, principal.key.key_id, reserved)
            except redis.RedisError:
                log.warning("could not refund the quota of key %s", principal.key.key_id)

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                replayed = any(k.lower() == b"idempotent-replayed" for k, _ in message.get("headers", []))
                # settled before the client sees the answer, so its next request sees the refund
                await settle(200 <= int(message["status"]) < 300 and not replayed)
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            await settle(False)  # no answer started (an exception): no job was made

    def _admit(self, token: str | None, submitting: bool) -> tuple[Principal, float | None]:
        """Who is calling, and (for a submission counted against a quota) when its quota was taken."""
        s = self.settings
        principal = ANONYMOUS
        if token is not None:
            key = self.keys.authenticate(token)
            if key is None:
                raise Refusal(401, "invalid_api_key", "the API key is unknown or revoked",
                              {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            principal = Principal(key)
        elif s.auth_required:
            raise Refusal(401, "missing_api_key", "this API needs `Authorization: Bearer <key>`",
                          {"WWW-Authenticate": "Bearer"})
        key = principal.key
        if key is not None:
            rate = key.rate_limit_per_s if key.rate_limit_per_s is not None else s.rate_limit_per_s
            burst = key.rate_limit_burst or s.rate_limit_burst
            decision = self.rates.take(key.key_id, rate, burst)
            if not decision.allowed:
                raise Refusal(429, "rate_limited", f"over the rate limit of {rate:g} requests/s for this key",
                              {"Retry-After": str(decision.retry_after_s)},
                              {"rate_limit_per_s": rate, "burst": burst})
        if not submitting:
            return principal, None
        full = check_queue_depth(self.services.queue, s.max_queue_depth)
        if full is not None:
            raise Refusal(429, "queue_full", "the queue is full; retry later",
                          {"Retry-After": str(s.retry_after_s)}, {"queued": full.depth, "limit": full.limit})
        if key is None:
            return principal, None
        limit = key.daily_job_quota if key.daily_job_quota is not None else s.daily_job_quota
        now = time.time()
        decision = self.quota.reserve(key.key_id, limit, now)
        if not decision.allowed:
            raise Refusal(429, "quota_exceeded", f"this key's quota of {limit} jobs per day is used up",
                          {"Retry-After": str(decision.retry_after_s)}, {"daily_job_quota": limit})
        return principal, now if limit > 0 else None


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            # any other scheme, or an empty token, is a bad credential: refused, not ignored
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


async def _answer(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                  detail: Any = None) -> None:
    body = ErrorResponse(error=ErrorInfo(code=code, message=message), detail=detail).model_dump_json().encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
