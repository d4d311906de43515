"""Long polling, `GET /v1/jobs/{id}?wait=S`: one request answered when the job ends — by the live
worker's event, by a cancel, or at the timeout with the status then — and the client library's
`wait()` built on it.

The wake-ups are checked with a client read timeout well under `wait`: without the event the
server would hold the request for the whole `wait` and the read would time out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from srserve.client import Client, JobTimeoutError
from tests.conftest import LiveService
from tests.served_app import AppClient
from tests.service import images
from tests.service.test_api_jobs import enqueue_direct
from tests.worker.slow_jobs import SLOW_UPSCALE

LONG = 30  # the default SRSERVE_MAX_WAIT_S; every wake-up below must beat SHORT_READ
SHORT_READ = 20.0


def _submit_offline(client: AppClient) -> str:
    resp = client.post("/v1/upscale", files={"image": ("a.png", images.png(12, 10), "image/png")},
                       data={"scale": "2", "model": "bicubic"})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def test_long_poll_answers_when_the_worker_finishes(live: LiveService) -> None:
    job_id = enqueue_direct(live, images.png(16, 16), SLOW_UPSCALE, 1.0)
    with httpx.Client(base_url=live.base_url, timeout=SHORT_READ) as c:
        body = c.get(f"/v1/jobs/{job_id}", params={"wait": LONG}).json()
        assert body["status"] == "succeeded" and body["result"] is not None
        # a finished job answers at once, whatever the wait
        assert c.get(f"/v1/jobs/{job_id}", params={"wait": LONG}).json()["status"] == "succeeded"


def test_long_poll_times_out_with_the_current_status(live: LiveService) -> None:
    job_id = enqueue_direct(live, images.png(16, 16), SLOW_UPSCALE, 30)
    live.wait_for(job_id, {"running"})
    with httpx.Client(base_url=live.base_url, timeout=SHORT_READ) as c:
        body = c.get(f"/v1/jobs/{job_id}", params={"wait": 0.3}).json()
        assert body["status"] == "running" and 0.0 < body["progress"] < 1.0
        # a cancel of the running job (the worker stops it) wakes a long poll too
        answers: list[dict] = []
        poll = threading.Thread(
            target=lambda: answers.append(c.get(f"/v1/jobs/{job_id}", params={"wait": LONG}).json())
        )
        poll.start()
        assert c.delete(f"/v1/jobs/{job_id}").status_code in (200, 202)
        poll.join(SHORT_READ + 5)
    assert answers and answers[0]["status"] == "canceled"


def test_client_wait_long_polls(live: LiveService) -> None:
    job_id = enqueue_direct(live, images.png(16, 16), SLOW_UPSCALE, 0.5)
    sleeps: list[float] = []
    with Client(live.base_url, timeout=SHORT_READ, sleep=sleeps.append, long_poll=LONG) as client:
        job = client.wait(job_id, timeout=120)
    assert job.status == "succeeded"
    assert sleeps == []  # the server held the request: no polling loop on the client's side


def test_wait_limits_and_cancel_of_a_queued_job(make_client: Callable[..., AppClient]) -> None:
    client = make_client(max_wait_s=LONG)
    job_id = _submit_offline(client)  # no worker listens to this queue: it stays queued
    resp = client.get(f"/v1/jobs/{job_id}", params={"wait": LONG + 1})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "wait_too_long"
    assert resp.json()["detail"]["max_wait_s"] == LONG
    assert client.get(f"/v1/jobs/{job_id}", params={"wait": -1}).status_code == 422
    assert client.get(f"/v1/jobs/{job_id}", params={"wait": 0.2}).json()["status"] == "queued"
    assert client.get("/v1/jobs/nosuchjob0000000000", params={"wait": 1}).status_code == 404
    # cancelling the queued job wakes a long poll on it (the API publishes the event itself)
    answers: list[dict] = []
    poll = threading.Thread(
        target=lambda: answers.append(client.get(f"/v1/jobs/{job_id}", params={"wait": LONG}).json())
    )
    poll.start()
    services = client.app.state.services
    assert services.watcher.wait_subscribed(10)
    while services.watcher.waiting == 0 and poll.is_alive():
        poll.join(0.01)
    assert "srserve_long_polls_waiting 1.0" in client.get("/metrics").text
    assert client.delete(f"/v1/jobs/{job_id}").json()["status"] == "canceled"
    poll.join(SHORT_READ)
    assert not poll.is_alive() and answers[0]["status"] == "canceled"
    assert services.watcher.waiting == 0
    # long polls get their own latency series, so a dashboard's p95 of plain reads stays meaningful
    metrics = client.get("/metrics").text
    assert 'route="/v1/jobs/{job_id}?wait"' in metrics and 'route="/v1/jobs/{job_id}"' in metrics
    assert "srserve_long_polls_waiting 0.0" in metrics


def test_long_polls_off(make_client: Callable[..., AppClient]) -> None:
    client = make_client(max_wait_s=0)
    job_id = _submit_offline(client)
    resp = client.get(f"/v1/jobs/{job_id}", params={"wait": 1})
    assert resp.status_code == 422 and resp.json()["detail"]["max_wait_s"] == 0
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    # the client library adopts the server's limit and falls back to polling
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    lib = Client(str(client.base_url), sleep=sleep)
    with pytest.raises(JobTimeoutError):  # the job never runs here
        lib.wait(job_id, timeout=0.5)
    assert lib.long_poll == 0 and sleeps  # it polled (and slept) instead
