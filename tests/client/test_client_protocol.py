"""Client behaviour that the live service cannot provoke on demand (429/503 backpressure, foreign error
bodies, polling backoff), checked against an in-process HTTP transport. End-to-end behaviour against
the real service is in test_client_live.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from srserve.client import (
    APIError,
    AsyncClient,
    Backoff,
    Client,
    JobFailedError,
    JobTimeoutError,
    parse_retry_after,
)


def _job(status: str, progress: float = 0.0, **extra: object) -> dict[str, object]:
    return {"id": "abcdefghijklmnop1234", "status": status, "model": "bicubic", "scale": 2,
            "progress": progress, **extra}  # fmt: skip


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    date = (now + timedelta(seconds=7)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(date, now=now) == pytest.approx(7.0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_is_capped_and_jittered() -> None:
    b = Backoff(initial=0.2, factor=2.0, maximum=1.0)
    delays = [[b.delay(a) for _ in range(50)] for a in range(6)]
    for a, ds in enumerate(delays):
        nominal = min(1.0, 0.2 * 2.0**a)
        assert all(nominal / 2 <= d <= nominal for d in ds)
        assert len(set(ds)) > 1  # jitter: clients do not poll in lockstep
    assert max(delays[5]) <= 1.0


def test_retry_after_is_honoured_on_429_and_503() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"code": "busy", "message": "m"}}),
        httpx.Response(503, headers={"Retry-After": "1"}, json={"error": {"code": "down", "message": "m"}}),
        httpx.Response(202, json=_job("queued")),
    ]
    slept: list[float] = []
    with Client("http://t", transport=httpx.MockTransport(lambda r: answers.pop(0)), sleep=slept.append) as c:
        job = c.submit(b"\x89PNG fake", scale=2)
    assert job.status == "queued"
    assert slept == [2.0, 1.0]


def test_retries_give_up_with_typed_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {"code": "queue_full", "message": "x"}})

    with (
        Client("http://t", transport=httpx.MockTransport(handler), max_retries=2, sleep=lambda s: None) as c,
        pytest.raises(APIError) as info,
    ):
        c.status("abcdefghijklmnop1234")
    assert info.value.status_code == 429
    assert info.value.code == "queue_full"


def test_foreign_error_body_still_typed() -> None:
    # FastAPI's own request-validation answer is not an ErrorResponse; callers still get a code
    body = {"detail": [{"loc": ["body", "scale"], "msg": "bad"}]}
    with (
        Client("http://t", transport=httpx.MockTransport(lambda r: httpx.Response(422, json=body))) as c,
        pytest.raises(APIError) as info,
    ):
        c.models()
    assert info.value.code == "http_422"
    assert info.value.detail == body
    with (
        Client("http://t", transport=httpx.MockTransport(lambda r: httpx.Response(502, text="<html>"))) as c,
        pytest.raises(APIError) as info2,
    ):
        c.models()
    assert info2.value.code == "http_502"


def test_api_key_and_multipart_fields() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json=_job("queued", kind="burst"))

    with Client("http://t/", api_key="k-123", transport=httpx.MockTransport(handler)) as c:
        c.submit(frames=[b"a", b"b", b"c"], model="m", scale=3, reference=b"r", format="webp", reference_frame=1)
    req = seen[0]
    assert req.headers["Authorization"] == "Bearer k-123"
    assert str(req.url) == "http://t/v1/upscale"
    body = req.read().decode("latin-1")
    assert body.count('name="frames"') == 3
    assert 'name="image"' not in body
    for field, value in [("scale", "3"), ("model", "m"), ("format", "webp"), ("reference_frame", "1")]:
        assert f'name="{field}"\r\n\r\n{value}\r\n' in body
    assert 'name="reference"' in body
    with pytest.raises(ValueError):
        Client("http://t").submit(b"x", frames=[b"y"])


def test_wait_polls_until_terminal_and_failed_job_raises() -> None:
    states = iter([_job("queued"), _job("running", 0.5), _job("failed", 1.0,
                  error={"code": "inference_failed", "message": "boom"})])  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json=_job("queued"))
        return httpx.Response(200, json=next(states))

    progress: list[str] = []
    slept: list[float] = []
    with (
        Client("http://t", transport=httpx.MockTransport(handler), sleep=slept.append) as c,
        pytest.raises(JobFailedError) as info,
    ):
        c.upscale(b"img", scale=2, on_progress=lambda j: progress.append(j.status))
    assert progress == ["queued", "running", "failed"]
    assert info.value.code == "inference_failed"
    assert len(slept) == 2


def test_async_wait_times_out() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_job("running", 0.1))

    async def go() -> None:
        async with AsyncClient("http://t", transport=httpx.MockTransport(handler)) as c:
            await c.wait("abcdefghijklmnop1234", timeout=0.3)

    with pytest.raises(JobTimeoutError) as info:
        asyncio.run(go())
    assert info.value.job.status == "running"
