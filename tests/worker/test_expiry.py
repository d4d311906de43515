"""Result expiry: the RQ job record carries the result TTL; once it is gone the API answers 404 and
the worker's maintenance sweep deletes the job's blobs."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from service.main import create_app
from service.settings import ServiceSettings
from srserve.blobstore import FilesystemBlobStore
from tests.served_app import AppClient, served
from tests.service import images
from worker import jobs
from worker import settings as worker_settings
from worker.main import build_worker


@pytest.fixture
def env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    values = {
        "REDIS_URL": redis_url,
        "SRSERVE_QUEUE_NAME": f"exp-{uuid.uuid4().hex[:8]}",
        "SRSERVE_BLOB_DIR": str(tmp_path / "blobs"),
        "SRSERVE_DEVICE": "cpu",
        "SRSERVE_RESULT_TTL_S": "60",
        "SRSERVE_ORPHAN_MIN_AGE_S": "0",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    # the worker-side context is per process: rebuild it for these settings, and again afterwards
    worker_settings.get_settings.cache_clear()
    jobs.get_context.cache_clear()
    yield values
    worker_settings.get_settings.cache_clear()
    jobs.get_context.cache_clear()


def _work_burst(redis_conn: Redis) -> None:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        build_worker(worker_settings.get_settings(), redis_conn).work(burst=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[AppClient]:
    with served(create_app(ServiceSettings())) as client:
        yield client


def test_results_expire_with_the_job_record(env: dict[str, str], client: AppClient, redis_conn: Redis) -> None:
    resp = client.post(
        "/v1/upscale", files={"image": ("a.png", images.png(), "image/png")}, data={"scale": "2"}
    )
    job_id = resp.json()["id"]
    _work_burst(redis_conn)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job
    assert client.get(job["result"]["url"]).status_code == 200
    ttl = redis_conn.ttl(f"rq:job:{job_id}")
    assert 0 < ttl <= 60  # SRSERVE_RESULT_TTL_S governs the record...
    store = FilesystemBlobStore(env["SRSERVE_BLOB_DIR"])
    assert store.exists(f"jobs/{job_id}/result.png")

    redis_conn.delete(f"rq:job:{job_id}")  # ...which Redis would drop after that TTL
    expired = client.get(f"/v1/jobs/{job_id}")
    assert expired.status_code == 404 and expired.json()["error"]["code"] == "job_not_found"
    assert client.get(f"/v1/jobs/{job_id}/result").status_code == 404

    old = time.time() - 10
    os.utime(store.root / "jobs" / job_id, (old, old))
    redis_conn.delete(f"srserve:blob-sweep:{env['SRSERVE_QUEUE_NAME']}")  # the first run's lock
    _work_burst(redis_conn)  # maintenance runs at worker start: the orphaned blobs go
    assert not store.exists(f"jobs/{job_id}/result.png")
