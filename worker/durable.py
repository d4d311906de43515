"""Idempotent completion: a job's outcome is committed to the blob store (`jobs/<id>/outcome.json`)
right after its result, before its inputs are deleted. If the worker then cannot tell RQ (Redis
down, worker killed), RQ re-runs the job: the re-run finds the committed outcome and returns it
instead of failing on inputs that are already gone. The blob expires with the job's other blobs."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from srserve import jobspec
from srserve.blobstore import BlobNotFoundError, BlobStore

log = logging.getLogger(__name__)


def outcome_key(job_id: str) -> str:
    return f"{jobspec.job_prefix(job_id)}outcome.json"


def committed_outcome(store: BlobStore, job_id: str) -> jobspec.JobOutcome | None:
    """The outcome an earlier attempt of this job stored, if its result is still there."""
    try:
        outcome = jobspec.JobOutcome.model_validate_json(store.get(outcome_key(job_id)))
    except BlobNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        log.warning("unreadable committed outcome of job %s: %s", job_id, exc)
        return None
    return outcome if store.exists(outcome.result.key) else None


def commit(store: BlobStore, job_id: str, outcome: jobspec.JobOutcome) -> None:
    store.put(outcome_key(job_id), outcome.model_dump_json().encode(), "application/json")
