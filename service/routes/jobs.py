"""Job status, result download and cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from service.auth import principal_of
from service.deps import Services, ServicesDep
from service.errors import ApiError, error_responses
from service.jobstore import TERMINAL_STATUSES
from srserve.schemas import JobView

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobView, responses=error_responses(404, 422, 503))
async def get_job(
    job_id: str,
    services: ServicesDep,
    request: Request,
    wait: Annotated[
        float,
        Query(ge=0, description="long poll: answer when the job ends or after this many seconds "
              "(at most the server's SRSERVE_MAX_WAIT_S, default 30)"),
    ] = 0.0,
) -> JobView:
    """Status, progress, timings, quality metrics and the result link of one job.

    With `wait`, the answer comes as soon as the job succeeds, fails or is canceled, or after `wait`
    seconds with its status then: one request instead of a polling loop."""
    owner = principal_of(request).owner
    limit = services.settings.max_wait_s
    if wait > limit:
        raise ApiError(422, "wait_too_long", f"wait must be at most {limit:g} seconds on this server",
                       {"wait": wait, "max_wait_s": limit})
    if wait <= 0:
        return await run_in_threadpool(_view, services, job_id, owner)
    # registered before the first read: an event published in between still wakes us
    event = services.watcher.register(job_id)
    try:
        view = await run_in_threadpool(_view, services, job_id, owner)
        deadline = asyncio.get_running_loop().time() + wait
        while view.status not in TERMINAL_STATUSES:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), left)
            event.clear()  # a retry re-queues the job: read it, and wait on if it is not over
            view = await run_in_threadpool(_view, services, job_id, owner)
        return view
    finally:
        services.watcher.unregister(job_id, event)


def _view(services: Services, job_id: str, owner: str | None) -> JobView:
    job, payload = services.jobs.fetch(job_id, owner)
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
