"""Per-key request rate (a token bucket) and daily job quota, both in Redis so every API process of a
deployment shares them. The bucket is one Lua script (atomic, Redis' own clock), so concurrent
requests through several API processes can never overdraw it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis

RATE_PREFIX = "srserve:rate:"
QUOTA_PREFIX = "srserve:quota:"

# KEYS[1] bucket; ARGV rate (tokens/s), burst. Returns {allowed (0/1), seconds until a token, as text}
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0


class RateLimiter:
    def __init__(self, connection: redis.Redis) -> None:
        self.r = connection
        self._bucket = connection.register_script(_TOKEN_BUCKET)

    def take(self, bucket: str, rate_per_s: float, burst: int) -> Decision:
        """Take one token from `bucket`; rate 0 means unlimited."""
        if rate_per_s <= 0:
            return Decision(True)
        allowed, wait = self._bucket(keys=[RATE_PREFIX + bucket], args=[rate_per_s, max(1, burst)])
        if int(allowed):
            return Decision(True)
        return Decision(False, max(1, math.ceil(float(wait))))


class DailyQuota:
    """Jobs per key per UTC day. `reserve` counts a job before the upload is processed (so parallel
    requests cannot overshoot); `refund` gives it back when the request did not create a job."""

    def __init__(self, connection: redis.Redis) -> None:
        self.r = connection

    @staticmethod
    def _key(key_id: str, now: float) -> str:
        return QUOTA_PREFIX + key_id + ":" + time.strftime("%Y-%m-%d", time.gmtime(now))

    def reserve(self, key_id: str, limit: int, now: float | None = None) -> Decision:
        if limit <= 0:
            return Decision(True)
        now = time.time() if now is None else now
        key = self._key(key_id, now)
        with self.r.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, 2 * 86_400)
            used, _ = pipe.execute()
        if int(used) <= limit:
            return Decision(True)
        self.r.decr(key)
        return Decision(False, seconds_to_utc_midnight(now))

    def refund(self, key_id: str, now: float | None = None) -> None:
        self.r.decr(self._key(key_id, time.time() if now is None else now))

    def used(self, key_id: str, now: float | None = None) -> int:
        return int(self.r.get(self._key(key_id, time.time() if now is None else now)) or 0)


def seconds_to_utc_midnight(now: float) -> int:
    return max(1, 86_400 - int(now) % 86_400)
