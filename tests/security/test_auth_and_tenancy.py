"""API keys against a real API process with SRSERVE_AUTH_REQUIRED=true (real Redis, and the live
worker running the jobs): public vs protected paths, hashed storage, tenant isolation of jobs and
results, per-key rate limits and daily quotas, and the `srserve keys` CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from redis import Redis

from service.auth import KEY_PREFIX, KeyStore
from service.ratelimit import RateLimiter
from tests.conftest import REPO_ROOT, LiveService
from tests.reliability.stack import Stack
from tests.security.conftest import ExtraApi
from tests.service import images

PUBLIC = ["/", "/static/app.js", "/healthz", "/readyz", "/docs", "/openapi.json", "/metrics"]


@pytest.fixture
def secure(make_api: ExtraApi) -> Iterator[Stack]:
    with make_api(SRSERVE_AUTH_REQUIRED="true", SRSERVE_RATE_LIMIT_PER_S="50", SRSERVE_RATE_LIMIT_BURST="50") as api:
        yield api


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _submit(c: httpx.Client, token: str | None, image: bytes | None = None) -> httpx.Response:
    return c.post(
        "/v1/upscale",
        files={"image": ("a.png", image or images.png(16, 12), "image/png")},
        data={"scale": "2", "model": "bicubic"},
        headers=_bearer(token) if token else {},
    )


def _keys_cli(live: LiveService, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srserve.cli", "keys", *args], cwd=REPO_ROOT, env=live.env,
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_public_paths_stay_public_and_v1_needs_a_key(secure: Stack) -> None:
    with secure.client() as c:
        for path in PUBLIC:
            assert c.get(path).status_code == 200, path
        for method, path in [("GET", "/v1/models"), ("GET", "/v1/jobs/AAAAAAAAAAAAAAAAAAAAAA"),
                             ("GET", "/v1/jobs/AAAAAAAAAAAAAAAAAAAAAA/result"),
                             ("DELETE", "/v1/jobs/AAAAAAAAAAAAAAAAAAAAAA")]:
            resp = c.request(method, path)
            assert resp.status_code == 401, (path, resp.text)
            assert resp.json()["error"]["code"] == "missing_api_key"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        refused = _submit(c, None)
        assert refused.status_code == 401
        for bad in ["nonsense", "srs_000000000000.notthesecretnotthesecret", "Basic dXNlcjpwYXNz"]:
            header = bad if bad.startswith("Basic") else f"Bearer {bad}"
            resp = c.get("/v1/models", headers={"Authorization": header})
            assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key", bad


def test_keys_are_stored_hashed(redis_conn: Redis) -> None:
    key, token = KeyStore(redis_conn).create("hash-check")
    secret = token.split(".", 1)[1]
    stored = {k.decode(): v.decode() for k, v in redis_conn.hgetall(KEY_PREFIX + key.key_id).items()}
    assert secret not in json.dumps(stored) and token not in json.dumps(stored)
    assert stored["hash"] == hashlib.sha256(f"{key.key_id}:{secret}".encode()).hexdigest()
    assert KeyStore(redis_conn).authenticate(token) == key
    assert KeyStore(redis_conn).authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None


def test_jobs_and_results_are_private_to_their_key(secure: Stack, live: LiveService, redis_conn: Redis) -> None:
    store = KeyStore(redis_conn)
    (_, alice), (_, bob) = store.create("alice"), store.create("bob")
    with secure.client() as c:
        created = _submit(c, alice)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        deadline = time.monotonic() + 60
        while (view := c.get(f"/v1/jobs/{job_id}", headers=_bearer(alice)).json())["status"] != "succeeded":
            assert time.monotonic() < deadline and view["status"] in ("queued", "running"), view
            time.sleep(0.1)
        own = c.get(f"/v1/jobs/{job_id}/result", headers=_bearer(alice))
        assert own.status_code == 200 and own.content.startswith(b"\x89PNG")
        assert "private" in own.headers["Cache-Control"] and own.headers["Vary"] == "Authorization"
        unknown = c.get("/v1/jobs/AAAAAAAAAAAAAAAAAAAAAA", headers=_bearer(bob))
        for method, path in [("GET", f"/v1/jobs/{job_id}"), ("GET", f"/v1/jobs/{job_id}/result"),
                             ("DELETE", f"/v1/jobs/{job_id}")]:
            other = c.request(method, path, headers=_bearer(bob))
            # exactly what an unknown id gets: nothing tells bob the id exists
            assert other.status_code == 404, (path, other.text)
            assert other.json()["error"] == unknown.json()["error"]
        assert c.get(f"/v1/jobs/{job_id}", headers=_bearer(alice)).json()["status"] == "succeeded"
    # the shared (keys-optional) API enforces the same ownership: anonymous callers see nothing
    with live.client() as anon:
        assert anon.get(f"/v1/jobs/{job_id}").status_code == 404
        assert anon.get(f"/v1/jobs/{job_id}/result").status_code == 404
        assert anon.get(f"/v1/jobs/{job_id}", headers=_bearer(alice)).status_code == 200
        assert anon.get("/v1/models", headers=_bearer("srs_000000000000.wrongwrongwrongwrongwrong")).status_code == 401


def test_rate_limit_per_key(secure: Stack, redis_conn: Redis) -> None:
    store = KeyStore(redis_conn)
    (_, slow), (_, other) = store.create("slow", rate_limit_per_s=0.05, rate_limit_burst=3), store.create("other")
    with secure.client() as c:
        codes = [c.get("/v1/models", headers=_bearer(slow)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429], codes
        limited = c.get("/v1/models", headers=_bearer(slow))
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 20  # one token per 20 s
        assert c.get("/v1/models", headers=_bearer(other)).status_code == 200  # buckets are per key


def test_daily_quota_counts_only_created_jobs(secure: Stack, redis_conn: Redis) -> None:
    _, token = KeyStore(redis_conn).create("quota", daily_job_quota=2)
    with secure.client() as c:
        bad = _submit(c, token, b"not an image")
        assert bad.status_code == 422  # a refused upload does not use the quota
        retried = [
            c.post("/v1/upscale", files={"image": ("a.png", images.png(9, 9), "image/png")},
                   data={"scale": "2", "model": "bicubic"}, headers={**_bearer(token), "Idempotency-Key": "q1"})
            for _ in range(2)
        ]
        assert [r.status_code for r in retried] == [202, 202]
        assert retried[1].headers["Idempotent-Replayed"] == "true"  # a replay is not a new job
        assert _submit(c, token).status_code == 202
        over = _submit(c, token)
        assert over.status_code == 429 and over.json()["error"]["code"] == "quota_exceeded"
        assert 0 < int(over.headers["Retry-After"]) <= 86_400
        assert c.get("/v1/models", headers=_bearer(token)).status_code == 200  # reads are not jobs


def test_keys_cli_create_list_revoke(secure: Stack, live: LiveService) -> None:
    created = _keys_cli(live, "create", "ci-robot", "--quota", "5", "--json")
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout)
    token, key_id = info["token"], info["id"]
    assert info["status"] == "active" and info["daily_job_quota"] == 5
    with secure.client() as c:
        assert c.get("/v1/models", headers=_bearer(token)).status_code == 200
    listed = _keys_cli(live, "list", "--json")
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert rows[key_id]["name"] == "ci-robot" and "token" not in rows[key_id]
    assert token.split(".", 1)[1] not in listed.stdout
    table = _keys_cli(live, "list")
    assert key_id in table.stdout and "ci-robot" in table.stdout
    assert _keys_cli(live, "revoke", key_id).returncode == 0
    assert json.loads(_keys_cli(live, "list", "--json").stdout) and any(
        r["id"] == key_id and r["status"] == "revoked" for r in json.loads(_keys_cli(live, "list", "--json").stdout)
    )
    with secure.client() as c:
        revoked = c.get("/v1/models", headers=_bearer(token))
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "invalid_api_key"
    assert _keys_cli(live, "revoke", "000000000000").returncode == 1


def test_metrics_can_require_a_key(make_api: ExtraApi, redis_conn: Redis) -> None:
    _, token = KeyStore(redis_conn).create("prometheus")
    with make_api(SRSERVE_AUTH_REQUIRED="true", SRSERVE_METRICS_REQUIRE_AUTH="true") as api, api.client() as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=_bearer(token)).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_token_bucket_refills(redis_conn: Redis) -> None:
    limiter = RateLimiter(redis_conn)
    bucket = f"refill-{time.time_ns()}"
    assert limiter.take(bucket, 20.0, 1).allowed
    empty = limiter.take(bucket, 20.0, 1)
    assert not empty.allowed and empty.retry_after_s == 1
    time.sleep(0.15)  # 20 tokens/s: full again (capped at the burst of 1)
    assert limiter.take(bucket, 20.0, 1).allowed
    assert not limiter.take(bucket, 20.0, 1).allowed
    assert all(limiter.take(bucket, 0, 1).allowed for _ in range(5))  # rate 0: unlimited
