"""The worker process: a multi-job RQ worker (`worker.batching_worker.BatchingWorker`, built on
`SimpleWorker`: no fork per job, so CUDA and loaded models stay in this one process) holding several
jobs whose tiles share device batches, with stable error codes, cooperative stop, no retries of
permanent failures, and a blob sweep in its periodic maintenance. `srserve worker` runs `run_worker()`."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from typing import Any

import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from srserve.blobstore import make_blob_store, sweep_orphaned_jobs
from srserve.jobspec import publish_job_event
from worker import jobs, pipeline
from worker.batching_worker import BatchingWorker
from worker.settings import WorkerSettings, get_settings

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"


def error_info(exc: BaseException | None) -> dict[str, str]:
    """What GET /v1/jobs/{id} shows as `error`: stable code, message without internals."""
    from rq.timeouts import JobTimeoutException

    if isinstance(exc, pipeline.JobError):
        return {"code": exc.code, "message": exc.message}
    if isinstance(exc, JobTimeoutException):
        return {"code": "timeout", "message": "the job ran past its time limit"}
    return {"code": INTERNAL_ERROR, "message": "the job failed unexpectedly; the worker log has details"}


def is_permanent(exc: BaseException | None) -> bool:
    """Failures that would repeat on a retry. Anything unexpected counts as transient (RQ retries it
    up to the job's Retry(max=...)): a lost connection or a full disk can pass, a bad input cannot."""
    from rq.timeouts import JobTimeoutException

    if isinstance(exc, pipeline.JobError):
        return exc.permanent
    return isinstance(exc, JobTimeoutException)


class SRWorker(BatchingWorker):
    """Holds up to `jobs_in_flight` jobs, each in its own thread, all in this one process."""

    def __init__(self, *args: Any, settings: WorkerSettings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings or get_settings()

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        exc = exc_info[1] if len(exc_info) > 1 else None
        info = error_info(exc)
        if isinstance(exc, pipeline.JobCanceledError):
            # RQ marks a job it was asked to stop as STOPPED (not FAILED) and never retries it;
            # BatchingWorker.handle_job_failure turns this set into RQ's `_stopped_job_id` under a lock
            self.stopping_job_ids.add(job.id)
            log.info("job %s canceled", job.id)
        elif is_permanent(exc):
            job.retries_left = 0  # a corrupt input fails the same way every time: no retry
        job.meta["error"] = info
        try:
            job.save_meta()
        except redis.RedisError:
            log.warning("could not save the error of job %s", job.id, exc_info=True)
        model = _payload_model(job)
        jobs.count_failure(model, info["code"])
        if isinstance(exc, pipeline.JobError) and info["code"] != INTERNAL_ERROR:
            log.warning("job %s failed: %s: %s", job.id, info["code"], info["message"])
            return  # expected failure: no traceback spam; RQ still records the exception string
        super().handle_exception(job, *exc_info)

    def _finalize_success(self, job: Job, queue: Queue, execution: Any, return_value: Any) -> None:
        super()._finalize_success(job, queue, execution, return_value)
        publish_job_event(self.connection, job.id)  # wakes the API's long polls (service/watch.py)

    def _finalize_failure(self, job: Job, queue: Queue, execution: Any, exc_info: Any) -> None:
        super()._finalize_failure(job, queue, execution, exc_info)
        publish_job_event(self.connection, job.id)  # failed, stopped, or queued again for a retry

    def mark_stopping(self, job_id: str) -> None:
        # RQ's stop-job / stop-execution commands: the job stops at its next tile or stage boundary
        super().mark_stopping(job_id)
        log.info("stop requested for job %s", job_id)
        jobs.request_stop(job_id)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        try:
            # one sweeper per interval across all workers of the queue
            lock = f"srserve:blob-sweep:{self.settings.queue_name}"
            if not self.connection.set(lock, self.name, nx=True, ex=max(1, self.maintenance_interval - 1)):
                return
            sweep_orphaned_jobs(
                make_blob_store(self.settings),
                lambda job_id: Job.exists(job_id, connection=self.connection),
                min_age_s=self.settings.orphan_min_age_s,
            )
        except Exception:  # cleanup must never take the worker down
            log.warning("blob sweep failed", exc_info=True)


def _payload_model(job: Job) -> str:
    try:
        args = job.args
        if args and isinstance(args[0], dict):
            return str(args[0].get("model", "unknown"))
    except Exception:  # undeserializable payload
        pass
    return "unknown"


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def build_worker(settings: WorkerSettings, connection: redis.Redis) -> SRWorker:
    queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    return SRWorker(
        [queue],
        settings=settings,
        name=settings.worker_name or default_worker_name(),
        connection=connection,
        serializer=JSONSerializer,
        worker_ttl=settings.worker_ttl_s,
        maintenance_interval=settings.maintenance_interval_s,
        default_result_ttl=settings.result_ttl_s,
        max_jobs_in_flight=settings.jobs_in_flight,
        execution_ttl_s=settings.execution_ttl_s,
    )


def preload(settings: WorkerSettings) -> None:
    ctx = jobs.get_context()
    for item in settings.preload_models:
        name, _, scale = item.partition(":")
        try:
            card = ctx.catalog.get(name)
            ctx.descriptors.get(card, int(scale) if scale else card.scales[0])
        except (KeyError, ValueError) as exc:
            raise SystemExit(f"cannot preload {item!r}: {exc}") from exc


def run_worker(settings: WorkerSettings | None = None, *, burst: bool = False) -> int:
    settings = settings or get_settings()
    connection = redis.Redis.from_url(settings.effective_redis_url, health_check_interval=30)
    t = time.perf_counter()
    ctx = jobs.get_context()
    preload(settings)
    log.info(
        "worker ready in %.1fs: device=%s queue=%s models=%s",
        time.perf_counter() - t,
        ctx.device,
        settings.queue_name,
        ctx.descriptors.loaded(),
    )
    if settings.metrics_port:
        from worker.metrics import serve_metrics

        serve_metrics(settings.metrics_port, settings.metrics_host)
    level = logging.getLevelName(logging.getLogger().level)
    try:
        while True:
            worker = build_worker(settings, connection)
            try:
                worker.work(burst=burst, logging_level=level)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("worker loop ended on a Redis error: %s", exc)
            if burst or worker._shutdown_requested_date is not None:
                break
            # RQ's loop quits on some Redis errors (a timeout, a failed heartbeat between jobs):
            # instead of exiting, wait for Redis and carry on as a fresh RQ worker
            log.warning("worker loop ended without a stop request; reconnecting")
            if not _wait_for_redis(connection):
                break
            with contextlib.suppress(redis.RedisError):
                worker.register_death()  # our previous incarnation: frees a fixed worker name
    finally:
        ctx.engine.stop()
    return 0


def _wait_for_redis(connection: redis.Redis) -> bool:
    """Ping with back-off until Redis answers (True) or SIGTERM/SIGINT arrives (False)."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        wait = 1.0
        while not stop.is_set():
            try:
                connection.ping()
                return True
            except redis.RedisError as exc:
                log.warning("Redis unreachable (%s); retrying in %.0fs", exc, wait)
                stop.wait(wait)
                wait = min(wait * 2, 30.0)
        return False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
