"""Contract of the RQ 3.0 behaviour the batching worker relies on, against a real Redis server:
several executions per worker, RQ's own success/failure/retry paths, stop commands, and recovery of
a killed worker's jobs through the StartedJobRegistry."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis
from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from tests.processes import popen_tied
from worker.batching_worker import BatchingWorker

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
DB = int(os.environ.get("SRSERVE_TEST_REDIS_DB", "7"))


@pytest.fixture
def conn() -> Iterator[Redis]:
    r = Redis.from_url(REDIS_URL, db=DB)
    yield r
    r.close()


@pytest.fixture
def queue(conn: Redis) -> Queue:
    return Queue(f"contract-{uuid.uuid4().hex[:8]}", connection=conn, serializer=JSONSerializer)


def _run_worker_in_thread(
    queue: Queue, conn: Redis, worker_class: type[BatchingWorker] = BatchingWorker, **kw: object
) -> tuple[BatchingWorker, threading.Thread]:
    worker = worker_class([queue], connection=conn, serializer=JSONSerializer, **kw)  # type: ignore[arg-type]
    # signal handlers can only be installed from the main thread; this worker runs in a thread
    worker._install_signal_handlers = lambda: None  # type: ignore[method-assign]
    t = threading.Thread(target=worker.work, kwargs={"burst": True}, daemon=True)
    t.start()
    return worker, t


def test_jobs_run_concurrently_in_one_worker_and_finish_through_rq(queue: Queue, conn: Redis) -> None:
    jobs = [queue.enqueue("tests.engine.rq_test_jobs.sleepy", 0.6, str(i)) for i in range(4)]
    worker, t = _run_worker_in_thread(queue, conn, max_jobs_in_flight=4)
    seen_concurrent = 0
    deadline = time.time() + 10
    while t.is_alive() and time.time() < deadline:
        seen_concurrent = max(seen_concurrent, len(worker.held_job_ids))
        time.sleep(0.05)
    t.join(timeout=10)
    assert seen_concurrent >= 2, "the worker never held more than one job"
    for job in jobs:
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED
        assert job.return_value()["job_id"] == job.id
    assert len(StartedJobRegistry(queue=queue)) == 0  # executions cleaned up


def test_failure_goes_through_rq_retry_then_failed(queue: Queue, conn: Redis) -> None:
    job = queue.enqueue("tests.engine.rq_test_jobs.boom", retry=Retry(max=1))
    _, t = _run_worker_in_thread(queue, conn)
    t.join(timeout=10)
    job.refresh()
    assert job.get_status() == JobStatus.FAILED
    assert job.retries_left == 0  # retried once by RQ before failing
    assert "boom" in (job.latest_result().exc_string or "")


class _LingeringWorker(BatchingWorker):
    """Each job thread lingers after RQ has recorded its outcome, as a busy interpreter may make it."""

    def perform_job(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().perform_job(*args, **kwargs)
        finally:
            time.sleep(0.3)


def test_a_retry_dequeued_before_its_failed_run_lets_go_is_still_held(queue: Queue, conn: Redis) -> None:
    """RQ re-queues a failed job for its retry at once; this worker dequeues it again (a new execution)
    while the failed run's thread still lingers. When that thread lets go it must not drop the retry
    from the held jobs: a burst worker would then see nothing held, quit, and strand the third run."""
    counter_key = f"contract:{uuid.uuid4().hex}"
    job = queue.enqueue("tests.engine.rq_test_jobs.fails_twice", counter_key, 0.6, retry=Retry(max=2))
    _, t = _run_worker_in_thread(queue, conn, _LingeringWorker)
    t.join(timeout=15)
    assert int(conn.get(counter_key) or 0) == 3
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    conn.delete(counter_key)


def test_stop_job_command_stops_one_held_job(queue: Queue, conn: Redis) -> None:
    long_job = queue.enqueue("tests.engine.rq_test_jobs.sleepy", 5.0, "long")
    short_job = queue.enqueue("tests.engine.rq_test_jobs.sleepy", 0.3, "short")
    worker, t = _run_worker_in_thread(queue, conn, max_jobs_in_flight=2)
    deadline = time.time() + 5
    while long_job.id not in worker.held_job_ids and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # let the worker's pubsub subscription settle
    send_stop_job_command(conn, long_job.id, serializer=JSONSerializer)
    t.join(timeout=10)
    assert long_job.get_status(refresh=True) == JobStatus.STOPPED
    assert short_job.get_status(refresh=True) == JobStatus.FINISHED


def test_killed_worker_jobs_are_retried_by_rq(queue: Queue, conn: Redis) -> None:
    """SIGKILL a worker process holding jobs: once their execution TTL lapses, RQ's registry
    cleanup re-queues them (Retry) and a new worker finishes them."""
    jobs = [
        queue.enqueue("tests.engine.rq_test_jobs.sleepy", 30.0 if i < 2 else 0.1, str(i), retry=Retry(max=2))
        for i in range(2)
    ]
    code = (
        "import sys; from redis import Redis; from rq.serializers import JSONSerializer; from rq import Queue;"
        "from worker.batching_worker import BatchingWorker;"
        f"c=Redis.from_url({REDIS_URL!r}, db={DB});"
        f"q=Queue({queue.name!r}, connection=c, serializer=JSONSerializer);"
        "BatchingWorker([q], connection=c, serializer=JSONSerializer,"
        " max_jobs_in_flight=4, execution_ttl_s=3).work()"
    )
    proc = popen_tied([sys.executable, "-c", code])
    try:
        deadline = time.time() + 15
        while time.time() < deadline and not all(
            j.get_status(refresh=True) == JobStatus.STARTED for j in jobs
        ):
            time.sleep(0.1)
        assert all(j.get_status(refresh=True) == JobStatus.STARTED for j in jobs)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(4)  # execution TTL (3 s) lapses
    StartedJobRegistry(queue=queue).cleanup()  # what a live worker's maintenance does
    for job in jobs:
        job.refresh()
        assert job.get_status() == JobStatus.QUEUED, "abandoned job was not re-queued"
        assert job.retries_left == 1
    assert isinstance(Job.fetch(jobs[0].id, connection=conn, serializer=JSONSerializer), Job)
