"""Job functions a real worker imports by dotted path: a slow wrapper of the real `run_upscale` that
waits cancellably (like every stage boundary of the real job), so tests can see a job `running` and
stop it there; and jobs that fail in the three ways the worker tells apart."""

from __future__ import annotations

import time
from typing import Any

from rq import get_current_job

from worker.jobs import JobState, run_upscale
from worker.pipeline import DecodeFailedError, InferenceFailedError

SLOW_UPSCALE = "tests.worker.slow_jobs.slow_upscale"


def slow_upscale(payload: dict[str, Any], delay_s: float) -> dict[str, Any]:
    job = get_current_job()
    state = JobState(job, payload["job_id"])
    state.progress(0.01, "waiting")
    deadline = time.monotonic() + delay_s
    while time.monotonic() < deadline:
        state.check()
        time.sleep(0.05)
    return run_upscale(payload)


def flaky(counter_key: str) -> str:
    """Fails with a transient error the first time, succeeds the second."""
    job = get_current_job()
    assert job is not None
    if job.connection.incr(counter_key) == 1:
        raise InferenceFailedError("device hiccup")
    return "ok"


def bad_input(counter_key: str) -> None:
    job = get_current_job()
    assert job is not None
    job.connection.incr(counter_key)
    raise DecodeFailedError("input: the file is not an image")


def crash(counter_key: str) -> None:
    job = get_current_job()
    assert job is not None
    job.connection.incr(counter_key)
    raise ZeroDivisionError("a bug, with internals the client must not see")
