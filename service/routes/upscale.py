"""POST /v1/upscale: validate an upload, store it, enqueue the job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from model_store.card import UnknownModelError, UnsupportedScaleError
from service.auth import principal_of
from service.deps import Services, ServicesDep
from service.errors import ApiError, error_responses
from service.idempotency import REPLAYED_HEADER, fingerprint
from service.jobstore import Submission
from service.validation import check_image, check_output_size, check_reference
from srserve.schemas import JobView, OutputFormat

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.post(
    "/upscale",
    status_code=202,
    response_model=JobView,
    responses=error_responses(409, 413, 422, 503),
)
async def upscale(
    services: ServicesDep,
    request: Request,
    response: Response,
    image: Annotated[
        UploadFile, File(description="the low-resolution image (PNG, JPEG, WebP, BMP, GIF, TIFF)")
    ],
    scale: Annotated[int, Form(ge=1, le=16, description="upscaling factor")] = 4,
    model: Annotated[
        str | None, Form(max_length=64, description="model name or family; default: the best for the scale")
    ] = None,
    reference: Annotated[
        UploadFile | None, File(description="optional ground-truth high-resolution image, scale x the input")
    ] = None,
    format: Annotated[OutputFormat, Form(description="output image format")] = "png",
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=255,
               description="retries with the same key and request return the same job"),
    ] = None,
) -> JobView:
    """Submit an image for super-resolution; answers 202 with the job and its Location."""
    image_bytes = await image.read()
    reference_bytes = await reference.read() if reference is not None else None
    principal = principal_of(request)

    def submit() -> JobView:
        return _submit(services, image_bytes, reference_bytes, scale, model or None, format, principal.owner)

    try:
        if idempotency_key is None:
            view = await run_in_threadpool(submit)
        else:
            fields = {"scale": scale, "model": model or None, "format": format}
            view, replayed = await run_in_threadpool(
                services.idempotency.submit_once,
                principal.scope_id,
                idempotency_key,
                fingerprint(fields, [image_bytes, reference_bytes]),
                submit,
                lambda job_id: services.jobs.find_view(job_id, principal.owner),
            )
            if replayed:
                response.headers[REPLAYED_HEADER] = "true"
    except ApiError as exc:
        services.metrics.uploads_rejected.labels(exc.code).inc()
        raise
    response.headers["Location"] = view.links["self"]
    return view


def _submit(
    services: Services,
    image: bytes,
    reference: bytes | None,
    scale: int,
    model: str | None,
    fmt: str,
    owner: str | None = None,
) -> JobView:
    settings = services.settings
    try:
        card = services.catalog.resolve(model, scale)
    except UnknownModelError as exc:
        raise ApiError(422, "unknown_model", exc.message, {"valid_models": exc.valid}) from exc
    except UnsupportedScaleError as exc:
        raise ApiError(422, "unsupported_scale", exc.message, {"supported_scales": exc.scales}) from exc
    checked = check_image(
        image,
        field="image",
        max_pixels=settings.max_input_pixels,
        decode_slots=services.decode_slots,
        max_frames=settings.max_frames,
    )
    if checked.frames > settings.max_frames:
        raise ApiError(
            413,
            "too_many_frames",
            f"image has {checked.frames} frames, over the limit of {settings.max_frames}",
            {"frames": checked.frames, "limit": settings.max_frames},
        )
    check_output_size(checked, scale, settings.max_output_pixels)
    if reference is not None:
        ref = check_image(
            reference,
            field="reference",
            max_pixels=settings.max_output_pixels,
            decode_slots=services.decode_slots,
        )
        check_reference(ref, checked, scale)
    view = services.jobs.submit(
        Submission(
            model=card.name,
            scale=scale,
            format=fmt,
            image=image,
            reference=reference,
            width=checked.width,
            height=checked.height,
            frames=checked.frames,
            owner=owner,
        )
    )
    services.metrics.jobs_submitted.labels(card.name).inc()
    return view
