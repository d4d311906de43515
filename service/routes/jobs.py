"""Job status, result download and cancellation."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from service.auth import principal_of
from service.deps import ServicesDep
from service.errors import error_responses
from srserve.schemas import JobView

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobView, responses=error_responses(404, 503))
def get_job(job_id: str, services: ServicesDep, request: Request) -> JobView:
    """Status, progress, timings, quality metrics and the result link of one job."""
    job, payload = services.jobs.fetch(job_id, principal_of(request).owner)
    return services.jobs.view(job, payload)


@router.get(
    "/{job_id}/result",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"image/png": {}, "image/webp": {}, "image/jpeg": {}}},
        **error_responses(404, 409, 503),
    },
)
def get_result(job_id: str, services: ServicesDep, request: Request) -> StreamingResponse:
    """The upscaled image (409 while the job is not finished, 404 when unknown or expired)."""
    chunks, stored = services.jobs.result_stream(job_id, principal_of(request).owner)
    return StreamingResponse(
        chunks,
        media_type=stored.content_type,
        headers={
            "Content-Length": str(stored.bytes),
            "Content-Disposition": f'inline; filename="{job_id}.{stored.format}"',
            "Cache-Control": "private, max-age=3600",
            "Vary": "Authorization",  # a shared cache must never serve one key's result to another
        },
    )


@router.delete(
    "/{job_id}",
    response_model=JobView,
    responses={
        202: {"model": JobView, "description": "stop requested; poll until canceled"},
        **error_responses(404, 409, 503),
    },
)
def cancel_job(job_id: str, services: ServicesDep, request: Request) -> JSONResponse:
    """Cancel a queued job (200, canceled) or ask the worker to stop a running one (202)."""
    view, done = services.jobs.cancel(job_id, principal_of(request).owner)
    services.metrics.jobs_canceled.inc()
    return JSONResponse(view.model_dump(mode="json"), status_code=200 if done else 202)
