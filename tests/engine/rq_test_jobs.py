"""Tiny job functions for the RQ contract tests (importable by a worker process by dotted path)."""

from __future__ import annotations

import os
import time

from rq import get_current_job

from worker.batching_worker import stop_requested_for_current_job


def sleepy(seconds: float, tag: str) -> dict[str, object]:
    job = get_current_job()
    assert job is not None
    deadline = time.time() + seconds
    while time.time() < deadline:
        if stop_requested_for_current_job():
            raise RuntimeError("stopped")
        time.sleep(0.02)
    return {
        "tag": tag,
        "job_id": job.id,
        "pid": os.getpid(),
        "started": job.started_at.isoformat() if job.started_at else None,
    }


def boom() -> None:
    raise ValueError("boom")


def fails_twice(counter_key: str, second_run_s: float) -> str:
    """Fails on its first two runs (the second after `second_run_s`), succeeds on the third."""
    job = get_current_job()
    assert job is not None
    run = job.connection.incr(counter_key)
    if run == 2:
        time.sleep(second_run_s)
    if run < 3:
        raise RuntimeError(f"run {run} fails")
    return "ok"
