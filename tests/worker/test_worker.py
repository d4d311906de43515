"""The RQ worker class in-process (burst mode, real Redis): retries only transient failures, records
stable error codes, hides internals of unexpected errors, and keeps going after each failure."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

from redis import Redis
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from worker.main import build_worker
from worker.settings import WorkerSettings


def test_failures_codes_and_retries(redis_url: str, redis_conn: Redis, tmp_path: Path) -> None:
    settings = WorkerSettings(redis_url=redis_url, queue_name=f"wk-{uuid.uuid4().hex[:8]}", blob_dir=tmp_path)
    queue = Queue(settings.queue_name, connection=redis_conn, serializer=JSONSerializer)
    keys = {name: f"test:{uuid.uuid4().hex}" for name in ("flaky", "bad", "crash")}
    jobs = {
        "flaky": queue.enqueue("tests.worker.slow_jobs.flaky", keys["flaky"], retry=Retry(max=2)),
        "bad": queue.enqueue("tests.worker.slow_jobs.bad_input", keys["bad"], retry=Retry(max=2)),
        "crash": queue.enqueue("tests.worker.slow_jobs.crash", keys["crash"], retry=Retry(max=2)),
    }
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        build_worker(settings, redis_conn).work(burst=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    def fetch(name: str) -> Job:
        return Job.fetch(jobs[name].id, connection=redis_conn, serializer=JSONSerializer)

    def runs(name: str) -> int:
        return int(redis_conn.get(keys[name]) or 0)

    assert fetch("flaky").get_status() == "finished" and runs("flaky") == 2  # transient: retried
    assert fetch("flaky").return_value() == "ok"

    bad = fetch("bad")
    assert bad.get_status() == "failed" and runs("bad") == 1  # permanent: not retried
    assert bad.meta["error"] == {"code": "decode_failed", "message": "input: the file is not an image"}

    crash = fetch("crash")
    assert crash.get_status() == "failed" and runs("crash") == 3  # unexpected: retried, then failed
    assert crash.meta["error"]["code"] == "internal_error"
    assert "internals" not in crash.meta["error"]["message"]
