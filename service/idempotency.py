"""`Idempotency-Key` on POST /v1/upscale: a client that retries after a timeout or a dropped
connection gets the job its first attempt created, not a second one.

Per caller (API key, or the anonymous scope) Redis maps sha256(key) to the request's fingerprint and,
once enqueued, its job id (`SET NX`, TTL SRSERVE_IDEMPOTENCY_TTL_S). The same key with the same
request returns the same job (202, header `Idempotent-Replayed: true`); with a different request
it is refused (422 `idempotency_key_reused`); while the first attempt is still being stored a
duplicate gets 409 `idempotency_key_in_flight` + Retry-After. A first attempt that fails (a 4xx, a
503, the API process dying) leaves at most a short-lived reservation, so the retry can go through.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable

import redis

from service.errors import ApiError
from srserve.schemas import JobView

PREFIX = "srserve:idem:"
PENDING_TTL_S = 30  # a reservation whose request died (API killed mid-submit) expires after this
REPLAYED_HEADER = "Idempotent-Replayed"


def fingerprint(fields: dict[str, object], files: Iterable[bytes | None]) -> str:
    """What makes two requests 'the same': every form field and every uploaded byte."""
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for data in files:
        h.update(b"\x00" if data is None else hashlib.sha256(data).digest())
    return h.hexdigest()


class IdempotencyStore:
    def __init__(self, connection: redis.Redis, ttl_s: int) -> None:
        self.r = connection
        self.ttl_s = ttl_s

    @staticmethod
    def _key(scope_id: str, key: str) -> str:
        return PREFIX + scope_id + ":" + hashlib.sha256(key.encode()).hexdigest()

    def submit_once(
        self,
        scope_id: str,
        key: str,
        request_fingerprint: str,
        submit: Callable[[], JobView],
        replay: Callable[[str], JobView | None],
    ) -> tuple[JobView, bool]:
        """Run `submit` once per (caller, key); returns the view and whether it is a replay.
        `replay(job_id)` gives the existing job's view, or None when it has expired."""
        rkey = self._key(scope_id, key)
        for _ in range(3):
            pending = json.dumps({"fp": request_fingerprint, "job": None})
            if self.r.set(rkey, pending, nx=True, ex=PENDING_TTL_S):
                break
            raw = self.r.get(rkey)
            if raw is None:
                continue  # expired between SET and GET: try to take it again
            stored = json.loads(raw)
            if stored.get("fp") != request_fingerprint:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request; use a new key",
                    {"header": "Idempotency-Key"},
                )
            if stored.get("job") is None:
                raise ApiError(
                    409,
                    "idempotency_key_in_flight",
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                    {"header": "Idempotency-Key"},
                    {"Retry-After": "1"},
                )
            view = replay(str(stored["job"]))
            if view is not None:
                return view, True
            self.r.delete(rkey)  # the job expired: the key is free again
        else:
            raise ApiError(409, "idempotency_key_in_flight", "Idempotency-Key contention; retry shortly",
                           {"header": "Idempotency-Key"}, {"Retry-After": "1"})
        try:
            view = submit()
        except BaseException:
            with contextlib.suppress(redis.RedisError):
                self.r.delete(rkey)
            raise
        self.r.set(rkey, json.dumps({"fp": request_fingerprint, "job": view.id}), ex=self.ttl_s)
        return view, False
