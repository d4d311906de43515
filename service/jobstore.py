"""Jobs as the API sees them: enqueue a validated upload on RQ, read an RQ job back as a `JobView`,
cancel it. Synchronous (redis-py); routes call these from FastAPI's thread pool."""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError
from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service.auth import can_see
from service.errors import ApiError
from service.settings import ServiceSettings
from srserve import jobspec
from srserve.blobstore import BlobNotFoundError, BlobStore
from srserve.schemas import ErrorInfo, JobMetrics, JobView, ResultInfo

log = logging.getLogger(__name__)

_JOB_ID = re.compile(jobspec.JOB_ID_PATTERN)

# RQ's statuses → the API's five. A job waiting for a retry is queued again from the user's view.
_STATUS: dict[JobStatus, str] = {
    JobStatus.CREATED: "queued",
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.SCHEDULED: "queued",
    JobStatus.READY_TO_ENQUEUE: "queued",
    JobStatus.RATE_LIMITED: "queued",
    JobStatus.STARTED: "running",
    JobStatus.FINISHED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "canceled",
    JobStatus.CANCELED: "canceled",
}


TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})  # the API's statuses a job ends in


def new_job_id() -> str:
    return secrets.token_urlsafe(16)  # 128 random bits: ids are capabilities, never enumerable


def api_status(job: Job) -> str:
    status = _STATUS.get(job.get_status(refresh=False), "queued")
    if status == "failed" and (job.meta.get("error") or {}).get("code") == "canceled":
        return "canceled"
    return status


@dataclass
class Submission:
    model: str
    scale: int
    format: str
    image: bytes
    width: int
    height: int
    frames: int
    reference: bytes | None = None
    owner: str | None = None  # API key id: only that key sees the job
    kind: str = "single"
    burst_frames: list[bytes] | None = None  # burst: every frame (then `image` is frame 0)
    reference_frame: int = 0


class JobStore:
    def __init__(self, settings: ServiceSettings, queue: Queue, store: BlobStore) -> None:
        self.settings = settings
        self.queue = queue
        self.store = store
        self.connection = queue.connection

    # ---- submit ---------------------------------------------------------------------------------

    def submit(self, sub: Submission) -> JobView:
        job_id = new_job_id()
        blobs = sub.burst_frames if sub.burst_frames else [sub.image]
        keys = [jobspec.input_key(job_id, i) for i in range(len(blobs))]
        ref_key = jobspec.reference_key(job_id) if sub.reference is not None else None
        payload = jobspec.UpscalePayload(
            job_id=job_id,
            kind=sub.kind,  # type: ignore[arg-type]
            model=sub.model,
            scale=sub.scale,
            format=sub.format,  # type: ignore[arg-type]
            input_keys=keys,
            reference_key=ref_key,
            reference_frame=sub.reference_frame,
            input=jobspec.InputInfo(width=sub.width, height=sub.height, frames=sub.frames),
            submitted_at=time.time(),
        )
        # blobs first: the worker may dequeue the job the instant it exists
        try:
            for key, blob in zip(keys, blobs, strict=True):
                self.store.put(key, blob)
            if ref_key and sub.reference is not None:
                self.store.put(ref_key, sub.reference)
        except OSError as exc:  # full disk, unreachable bucket: the server's problem, not the client's
            log.error("could not store the upload of job %s: %s", job_id, exc)
            with contextlib.suppress(OSError):
                self.store.delete_prefix(jobspec.job_prefix(job_id))
            raise ApiError(
                503,
                "storage_unavailable",
                "the upload could not be stored; retry shortly",
                None,
                {"Retry-After": str(self.settings.retry_after_s)},
            ) from exc
        s = self.settings
        try:
            job = self.queue.enqueue(
                jobspec.RUN_UPSCALE,
                payload.model_dump(mode="json"),
                job_id=job_id,
                job_timeout=s.job_timeout_s,
                result_ttl=s.result_ttl_s,
                failure_ttl=s.failure_ttl_s,
                retry=Retry(max=s.job_retries) if s.job_retries else None,
                meta={"progress": 0.0, **({"owner": sub.owner} if sub.owner else {})},
                description=f"upscale {sub.model} x{sub.scale} {sub.width}x{sub.height}",
            )
        except Exception:
            self.store.delete_prefix(jobspec.job_prefix(job_id))
            raise
        return self.view(job)

    # ---- read ---------------------------------------------------------------------------------

    def fetch(self, job_id: str, owner: str | None = None) -> tuple[Job, jobspec.UpscalePayload]:
        """The RQ job and its payload, or 404 (unknown, expired, malformed id, not one of ours, or
        made with another API key than `owner`: indistinguishable from unknown)."""
        if not _JOB_ID.fullmatch(job_id):
            raise _not_found(job_id)
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
            payload = jobspec.UpscalePayload.model_validate(job.args[0])
        except NoSuchJobError as exc:
            raise _not_found(job_id) from exc
        except (ValidationError, DeserializationError, IndexError, TypeError, ValueError, KeyError) as exc:
            log.warning("job %s is not an upscale job or is unreadable: %s", job_id, exc)
            raise _not_found(job_id) from exc
        if not can_see((job.meta or {}).get("owner"), owner):
            raise _not_found(job_id)
        return job, payload

    def find_view(self, job_id: str, owner: str | None = None) -> JobView | None:
        """The view of a job, or None when it is gone (idempotent replays)."""
        try:
            return self.view(*self.fetch(job_id, owner))
        except ApiError:
            return None

    def view(self, job: Job, payload: jobspec.UpscalePayload | None = None) -> JobView:
        if payload is None:
            payload = jobspec.UpscalePayload.model_validate(job.args[0])
        status = api_status(job)
        outcome = self.outcome(job) if status == "succeeded" else None
        meta = job.meta or {}
        progress = 1.0 if status == "succeeded" else float(meta.get("progress") or 0.0)
        position = None
        if status == "queued" and job.get_status(refresh=False) == JobStatus.QUEUED:
            position = self.queue.get_job_position(job.id)
        error = None
        if status == "failed":
            info = meta.get("error") or {
                "code": "job_failed",
                "message": "the job failed (worker lost or killed)",
            }
            error = ErrorInfo(code=str(info.get("code")), message=str(info.get("message")))
        elif status == "canceled":
            error = ErrorInfo(code="canceled", message="the job was canceled")
        links = {"self": self.url(f"/v1/jobs/{job.id}")}
        if status in ("queued", "running"):
            links["cancel"] = links["self"]
        result = None
        metrics: JobMetrics | None = None
        if outcome is not None:
            links["result"] = self.url(f"/v1/jobs/{job.id}/result")
            r = outcome.result
            result = ResultInfo(
                url=links["result"],
                width=r.width,
                height=r.height,
                format=r.format,
                bytes=r.bytes,
                content_type=r.content_type,
            )
            metrics = outcome.metrics
        finished_at = job.ended_at if status in TERMINAL_STATUSES else None
        if status == "canceled" and finished_at is None and meta.get("canceled_at"):
            finished_at = datetime.fromtimestamp(float(meta["canceled_at"]), UTC)
        return JobView(
            id=job.id,
            status=status,  # type: ignore[arg-type]
            model=payload.model,
            scale=payload.scale,
            kind=payload.kind,
            created_at=job.created_at,
            started_at=job.started_at if status != "queued" else None,
            finished_at=finished_at,
            progress=min(max(progress, 0.0), 1.0),
            queue_position=position,
            input=payload.input.model_dump(),
            result=result,
            metrics=metrics,
            error=error,
            links=links,
        )

    def outcome(self, job: Job) -> jobspec.JobOutcome | None:
        value = job.return_value(refresh=True)
        if value is None:
            return None
        try:
            return jobspec.JobOutcome.model_validate(value)
        except ValidationError:
            log.error("job %s returned an unreadable outcome", job.id)
            return None

    def url(self, path: str) -> str:
        return f"{self.settings.public_base_url or ''}{path}"

    # ---- result -------------------------------------------------------------------------------

    def result_stream(
        self, job_id: str, owner: str | None = None
    ) -> tuple[Iterator[bytes], jobspec.StoredResult]:
        job, _ = self.fetch(job_id, owner)
        status = api_status(job)
        if status != "succeeded":
            raise ApiError(
                409,
                "job_not_finished" if status in ("queued", "running") else f"job_{status}",
                f"the job is {status}; a result exists only once it has succeeded",
                {"status": status},
            )
        outcome = self.outcome(job)
        if outcome is None:
            raise _expired(job_id)
        try:
            return self.store.stream(outcome.result.key), outcome.result
        except BlobNotFoundError as exc:
            raise _expired(job_id) from exc

    # ---- cancel -------------------------------------------------------------------------------

    def cancel(self, job_id: str, owner: str | None = None) -> tuple[JobView, bool]:
        """Cancel a queued job now, or ask the worker to stop a running one.

        Returns the view and whether the cancellation is complete (False: the stop is in flight).
        """
        job, payload = self.fetch(job_id, owner)
        status = api_status(job)
        if status == "canceled":
            return self.view(job, payload), True
        if status in ("succeeded", "failed"):
            raise ApiError(
                409, "job_finished", f"the job already {status}; nothing to cancel", {"status": status}
            )
        # the flag covers every race: a queued job dequeued right now stops at its first check
        ttl = self.settings.job_timeout_s * (self.settings.job_retries + 1) + 3600
        self.connection.set(jobspec.cancel_key(job.id), "1", ex=ttl)
        if status == "queued":
            with contextlib.suppress(InvalidJobOperation):  # canceled concurrently
                job.cancel()
            job.meta["canceled_at"] = time.time()
            job.save_meta()
            self.connection.expire(job.key, self.settings.failure_ttl_s)
            job.refresh()
            if api_status(job) == "canceled":
                jobspec.publish_job_event(self.connection, job.id)  # wake its long polls
                return self.view(job, payload), True
        # not on a worker yet (or any more) raises: the flag is enough then
        with contextlib.suppress(InvalidJobOperation, NoSuchJobError):
            send_stop_job_command(self.connection, job.id, serializer=JSONSerializer)
        job.refresh()
        return self.view(job, payload), api_status(job) == "canceled"


def _not_found(job_id: str) -> ApiError:
    return ApiError(
        404, "job_not_found", "no such job (unknown id, or its results expired)", {"id": job_id[:80]}
    )


def _expired(job_id: str) -> ApiError:
    return ApiError(404, "result_expired", "the result of this job has expired", {"id": job_id})
