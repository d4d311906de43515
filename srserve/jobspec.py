"""The contract between the API (which enqueues) and the worker (which runs): the RQ function path,
the JSON payload of a job, its blob keys, the shape of its return value, the cancel flag and the
job-event channel (with its one publisher).

Pure pydantic (redis only inside `publish_job_event`), no torch, no FastAPI: both sides import it,
so neither re-declares the payload.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from srserve.schemas import JobMetrics, OutputFormat

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

# RQ enqueues by dotted path, so the API never imports the worker (or torch).
RUN_UPSCALE = "worker.jobs.run_upscale"
PAYLOAD_VERSION = 1
# Set by the API on DELETE; the worker checks it between stages (works before RQ knows the job's
# worker, and on any worker class). Expires on its own.
CANCEL_KEY_PREFIX = "srserve:cancel:"
# Pub/sub channel: a worker (or the API, for a queued job it cancels) publishes a job's id there
# when the job stops running (finished, failed, canceled, or back in the queue for a retry); API
# processes wake long-polling `GET /v1/jobs/{id}?wait=S` requests with it (service/watch.py).
JOB_EVENTS_CHANNEL = "srserve:job-events"
# job ids are secrets.token_urlsafe(16): 22 URL-safe characters; RQ accepts [A-Za-z0-9_-]
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"


def publish_job_event(connection: Redis, job_id: str) -> None:
    """Tell the API's long polls that `job_id` stopped running; best effort (they fall back to their
    timeout), so a Redis hiccup here never fails the job or the cancel that called it."""
    from redis import RedisError

    try:
        connection.publish(JOB_EVENTS_CHANNEL, job_id)
    except RedisError as exc:
        log.debug("could not publish the event of job %s: %s", job_id, exc)


def cancel_key(job_id: str) -> str:
    return CANCEL_KEY_PREFIX + job_id


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def input_key(job_id: str, index: int = 0) -> str:
    return f"jobs/{job_id}/input/{index}"


def reference_key(job_id: str) -> str:
    return f"jobs/{job_id}/reference"


def result_key(job_id: str, fmt: str) -> str:
    return f"jobs/{job_id}/result.{fmt}"


class InputInfo(BaseModel):
    width: int
    height: int
    frames: int = 1


class UpscalePayload(BaseModel):
    """The one argument of `worker.jobs.run_upscale`, stored by RQ as JSON."""

    model_config = ConfigDict(extra="forbid")

    version: int = PAYLOAD_VERSION
    job_id: str
    kind: Literal["single", "burst"] = "single"
    model: str
    scale: int = Field(ge=1, le=16)
    format: OutputFormat = "png"
    input_keys: list[str] = Field(min_length=1)
    reference_key: str | None = None
    reference_frame: int = Field(default=0, ge=0, description="burst: the frame the output is aligned to")
    input: InputInfo
    submitted_at: float  # epoch seconds: queue wait is measured from here


class StoredResult(BaseModel):
    """Where the worker put the output image (the API turns it into a ResultInfo with a URL)."""

    key: str
    width: int
    height: int
    format: OutputFormat
    bytes: int
    content_type: str


class JobOutcome(BaseModel):
    """The return value of `run_upscale` (kept by RQ for result_ttl)."""

    result: StoredResult
    metrics: JobMetrics
