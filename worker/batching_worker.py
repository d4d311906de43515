"""An RQ worker that holds several jobs at once, so the device thread can batch tiles across them.

Built on RQ 3.0's per-worker executions (pinned in pyproject; tests/worker/test_rq_contract.py
checks the behaviour relied on here). Each dequeued job gets its own RQ `Execution` and runs
`perform_job` in a job thread, so RQ's own success/failure/retry handlers, registries, job
timeouts (thread-safe `TimerDeathPenalty`), stop commands and dead-worker recovery all keep working.
A heartbeat thread refreshes every held execution with a short TTL, so the jobs of a SIGKILLed
worker are seen as abandoned (and retried) within `execution_ttl_s` + the maintenance interval.

Shutdown: the first SIGTERM/SIGINT stops dequeuing and drains the held jobs; a second one re-queues
whatever is still held and exits.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from rq.command import parse_payload
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.timeouts import TimerDeathPenalty
from rq.worker import SimpleWorker, WorkerStatus

log = logging.getLogger(__name__)

_current = threading.local()


def stop_requested_for_current_job() -> bool:
    """True once a stop command or a cold shutdown asked the current job thread's job to stop."""
    worker: BatchingWorker | None = getattr(_current, "worker", None)
    job_id: str | None = getattr(_current, "job_id", None)
    return bool(worker and job_id and job_id in worker.stopping_job_ids)


class BatchingWorker(SimpleWorker):
    death_penalty_class = TimerDeathPenalty  # SIGALRM only works in the main thread

    def __init__(
        self,
        *args: Any,
        max_jobs_in_flight: int = 8,
        execution_ttl_s: int = 30,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_jobs_in_flight = max_jobs_in_flight
        self.execution_ttl_s = execution_ttl_s
        self._slots = threading.BoundedSemaphore(max_jobs_in_flight)
        self._pool = ThreadPoolExecutor(max_workers=max_jobs_in_flight, thread_name_prefix="srserve-job")
        # keyed by execution id, not job id: a job RQ re-queued for a retry can be dequeued again (a new
        # execution) before the thread of its failed run has let go of the old one
        self._held: dict[str, tuple[Job, Queue, Execution]] = {}
        self._held_lock = threading.Lock()
        self._finalize_lock = threading.Lock()
        self.stopping_job_ids: set[str] = set()
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        self._requeue_on_exit = False
        # cold shutdown vs. a job thread finishing at that very moment: a job is either finalized by
        # its thread or re-queued by the shutdown, never both (guarded by _finalize_lock; execution ids)
        self._finalizing: set[str] = set()
        self._requeued: set[str] = set()

    # ---- RQ hooks ------------------------------------------------------------------------------

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # Short, refreshed by our heartbeat thread: a dead worker's jobs are found quickly.
        return self.execution_ttl_s

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None):  # type: ignore[no-untyped-def]
        self._ensure_heartbeat_thread()
        # Wait for a free slot before taking a job off the queue, so we never hold more than we can run.
        while not self._slots.acquire(timeout=1.0):
            try:
                self.heartbeat()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                # Redis down while every slot is busy: keep the held jobs, wait for it (RQ's dequeue
                # loop does the same); raising here would end the worker
                log.warning("worker heartbeat failed, Redis unreachable: %s", exc)
            if self._stop_requested:
                return None
        while True:
            try:
                result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except BaseException:
                self._slots.release()
                raise
            if result is not None:
                return result
            # Burst mode (no timeout) and the queue looks empty: while we hold jobs, one of them may
            # still put itself back (RQ Retry) — quitting now would strand it queued. Wait and look again.
            if timeout is not None or self._stop_requested:
                self._slots.release()
                return None
            if not self.held_job_ids:
                # a retried job is back on its queue before its thread lets go of it: with nothing
                # held, one last look at the queues decides (else such a job could be stranded)
                if not any(q.count for q in self.queues):
                    self._slots.release()
                    return None
                continue
            time.sleep(0.05)

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        with self._held_lock:
            self._held[execution.id] = (job, queue, execution)
        self._pool.submit(self._run_one, job, queue, execution)

    def _run_one(self, job: Job, queue: Queue, execution: Execution) -> None:
        _current.worker, _current.job_id = self, job.id
        try:
            self.perform_job(job, queue, execution)
        except BaseException:  # perform_job handles job errors; this is a bug guard
            log.exception("job thread for %s crashed", job.id)
        finally:
            _current.worker = _current.job_id = None
            # let go of the held entry before the finalizing mark: a cold shutdown that still sees
            # this execution held also sees it finalizing, and does not re-queue its job
            with self._held_lock:
                self._held.pop(execution.id, None)
                idle = not self._held
                rerun_held = any(held_job.id == job.id for held_job, _, _ in self._held.values())
            with self._finalize_lock:
                self._finalizing.discard(execution.id)
            if not rerun_held:  # a stop asked of the job's retry, already running, still stands
                self.stopping_job_ids.discard(job.id)
            try:
                if idle:
                    self.set_state(WorkerStatus.IDLE)
            except redis.RedisError as exc:  # Redis down: the state is cosmetic, the slot is not
                log.warning("could not set the worker state: %s", exc)
            finally:
                self._slots.release()

    def _claim_finalization(self, execution: Execution) -> bool:
        """False when a cold shutdown already put this execution's job back on its queue."""
        with self._finalize_lock:
            if execution.id in self._requeued:
                return False
            self._finalizing.add(execution.id)
            return True

    def _finalize_success(self, job: Job, queue: Queue, execution: Execution, return_value: Any) -> None:
        if not self._claim_finalization(execution):
            # it finished just after being re-queued: keep the result, don't run it a second time
            queue.remove(job.id)
        super()._finalize_success(job, queue, execution, return_value)

    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: Any) -> None:
        if not self._claim_finalization(execution):
            # interrupted by the cold shutdown that re-queued it: not a failure (no retry spent, no error)
            log.info("job %s was re-queued at shutdown; its interruption is not recorded", job.id)
            return
        super()._finalize_failure(job, queue, execution, exc_info)

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry=None, exc_string="", execution=None
    ):  # type: ignore[no-untyped-def]
        # RQ keeps one `_stopped_job_id`; with several jobs in flight, set it under a lock per failure.
        with self._finalize_lock:
            if job.id in self.stopping_job_ids and not self._requeue_on_exit:
                self._stopped_job_id = job.id
            super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    def mark_stopping(self, job_id: str) -> None:
        """A held job was asked to stop; subclasses also tell the job code (it checks cooperatively)."""
        self.stopping_job_ids.add(job_id)

    def request_stop_execution(self, execution_id: str) -> None:
        with self._held_lock:
            held = self._held.get(execution_id)
        if held is None:
            log.warning("not running execution %s, stop command ignored", execution_id)
            return
        self.mark_stopping(held[0].id)

    def handle_payload(self, message: dict[str, Any]) -> None:
        payload = parse_payload(message)
        if payload.get("command") == "stop-job":
            job_id = payload.get("job_id")
            if job_id in self.held_job_ids:
                self.mark_stopping(job_id)
            else:
                log.warning("not working on job %s, stop command ignored", job_id)
            return
        super().handle_payload(message)

    def request_force_stop(self, signum: int, frame: Any) -> None:
        """Second signal: put every held job back on its queue, then exit."""
        log.warning("cold shutdown: re-queuing %d held jobs", len(self._held))
        self._requeue_on_exit = True
        self._requeue_held()
        raise SystemExit()

    def teardown(self) -> None:
        # Warm shutdown (or burst end): drain what we hold, then let RQ unregister the worker.
        self._pool.shutdown(wait=True)
        self._hb_stop.set()
        if self._hb_thread:
            self._hb_thread.join(timeout=5)
        super().teardown()

    # ---- internals -----------------------------------------------------------------------------

    @property
    def held_job_ids(self) -> list[str]:
        with self._held_lock:
            return [job.id for job, _, _ in self._held.values()]

    def _requeue_held(self) -> None:
        with self._held_lock:
            held = list(self._held.values())
        for job, queue, execution in held:
            with self._finalize_lock:
                if execution.id in self._finalizing:
                    continue  # its thread is recording its outcome right now: nothing to re-queue
                self._requeued.add(execution.id)
            self.mark_stopping(job.id)
            try:
                with self.connection.pipeline() as pipe:
                    self.cleanup_execution(job, pipeline=pipe, execution=execution)
                    job.set_status(JobStatus.QUEUED, pipeline=pipe)
                    pipe.execute()
                queue._enqueue_job(job, at_front=True)  # back to the front: it already waited its turn
                log.info("re-queued job %s", job.id)
            except Exception:
                log.exception("could not re-queue job %s", job.id)

    def _ensure_heartbeat_thread(self) -> None:
        if self._hb_thread is None:
            self._hb_thread = threading.Thread(
                target=self._heartbeat_loop, name="srserve-heartbeat", daemon=True
            )
            self._hb_thread.start()

    def _heartbeat_loop(self) -> None:
        interval = max(1.0, self.execution_ttl_s / 3)
        while not self._hb_stop.wait(interval):
            with self._held_lock:
                held = list(self._held.values())
            for job, _queue, execution in held:
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception:
                    log.exception("heartbeat for job %s failed", job.id)
            if not held:
                try:
                    self.heartbeat()
                except Exception:
                    log.exception("worker heartbeat failed")
