"""Optional API keys: `Authorization: Bearer srs_<id>.<secret>`.

A key is a public id (12 hex digits, shown by `srserve keys list`) and a 256-bit random secret.
Redis keeps only sha256(id ":" secret) per key (`srserve:apikey:<id>`), never the secret: a leaked
Redis dump grants nothing. The secret is high-entropy, so a fast hash is enough (no password
stretching needed); comparison is constant-time. Keys can carry their own rate limit and daily quota.

Jobs created with a key record its id as their owner (RQ job meta `owner`); every job route answers
404 to anyone else, exactly as for an unknown id, so job ids of other tenants cannot be probed.
Shared by the API (service.guard) and the CLI (srserve.commands.keys); no FastAPI import here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis
from starlette.requests import HTTPConnection

KEY_PREFIX = "srserve:apikey:"
KEY_INDEX = "srserve:apikeys"
TOKEN_PREFIX = "srs_"
_TOKEN = re.compile(r"^srs_([0-9a-f]{12})\.([A-Za-z0-9_-]{20,128})$")
STATE_KEY = "srserve_principal"  # where the guard middleware leaves the caller in scope["state"]


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    created_at: float
    revoked_at: float | None = None
    rate_limit_per_s: float | None = None  # None: the service default
    rate_limit_burst: int | None = None
    daily_job_quota: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key, or nobody (auth optional and no header sent)."""

    key: ApiKey | None = None

    @property
    def owner(self) -> str | None:
        return self.key.key_id if self.key else None

    @property
    def scope_id(self) -> str:
        """Namespace of per-caller state (idempotency keys)."""
        return f"key:{self.key.key_id}" if self.key else "anonymous"


ANONYMOUS = Principal()


def hash_secret(key_id: str, secret: str) -> str:
    return hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    m = _TOKEN.fullmatch(token.strip())
    return (m.group(1), m.group(2)) if m else None


def can_see(stored_owner: object, owner: str | None) -> bool:
    """Jobs made without a key are visible to whoever has their (unguessable) id; a key's jobs only
    to that key."""
    return stored_owner is None or stored_owner == owner


def principal_of(conn: HTTPConnection) -> Principal:
    """The caller the guard middleware identified (anonymous when there was nothing to check)."""
    found = conn.scope.get("state", {}).get(STATE_KEY)
    return found if isinstance(found, Principal) else ANONYMOUS


class KeyStore:
    def __init__(self, connection: redis.Redis) -> None:
        self.r = connection

    def create(
        self,
        name: str,
        *,
        rate_limit_per_s: float | None = None,
        rate_limit_burst: int | None = None,
        daily_job_quota: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key; returns it and the bearer token, which is shown once and never stored."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        fields: dict[str, Any] = {"name": name, "hash": hash_secret(key_id, secret), "created_at": time.time()}
        for field, value in (
            ("rate_limit_per_s", rate_limit_per_s),
            ("rate_limit_burst", rate_limit_burst),
            ("daily_job_quota", daily_job_quota),
        ):
            if value is not None:
                fields[field] = value
        with self.r.pipeline() as pipe:
            pipe.hset(KEY_PREFIX + key_id, mapping=fields)
            pipe.sadd(KEY_INDEX, key_id)
            pipe.execute()
        key = self.get(key_id)
        assert key is not None
        return key, f"{TOKEN_PREFIX}{key_id}.{secret}"

    def get(self, key_id: str) -> ApiKey | None:
        raw = self.r.hgetall(KEY_PREFIX + key_id)
        return _from_hash(key_id, raw) if raw else None

    def list(self) -> list[ApiKey]:
        ids = sorted(v.decode() if isinstance(v, bytes) else str(v) for v in self.r.smembers(KEY_INDEX))
        return [k for k in (self.get(i) for i in ids) if k is not None]

    def revoke(self, key_id: str) -> bool:
        """Revoked keys stay listed (audit) but authenticate nothing. False: no such key."""
        if not self.r.exists(KEY_PREFIX + key_id):
            return False
        self.r.hsetnx(KEY_PREFIX + key_id, "revoked_at", time.time())
        return True

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key this bearer token belongs to, or None."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        raw = self.r.hgetall(KEY_PREFIX + key_id)
        if not raw:
            return None
        stored = _text(raw.get(b"hash"))
        if not stored or not hmac.compare_digest(stored, hash_secret(key_id, secret)):
            return None
        key = _from_hash(key_id, raw)
        return key if key.active else None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _from_hash(key_id: str, raw: dict[Any, Any]) -> ApiKey:
    d = {_text(k): _text(v) for k, v in raw.items()}

    def num(name: str, cast: type) -> Any:
        return cast(float(d[name])) if d.get(name) else None

    return ApiKey(
        key_id=key_id,
        name=d.get("name", ""),
        created_at=float(d.get("created_at") or 0.0),
        revoked_at=num("revoked_at", float),
        rate_limit_per_s=num("rate_limit_per_s", float),
        rate_limit_burst=num("rate_limit_burst", int),
        daily_job_quota=num("daily_job_quota", int),
    )
