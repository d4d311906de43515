"""POST /v1/upscale: validate an upload, store it, enqueue the job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from model_store.card import ModelCard, UnknownModelError, UnsupportedScaleError
from service.auth import principal_of
from service.deps import Services, ServicesDep
from service.errors import ApiError, error_responses
from service.idempotency import REPLAYED_HEADER, fingerprint
from service.jobstore import Submission
from service.validation import check_image, check_output_size, check_reference
from srserve import imaging
from srserve.schemas import JobView, OutputFormat

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.post(
    "/upscale",
    status_code=202,
    response_model=JobView,
    responses=error_responses(400, 409, 413, 422, 503),
)
async def upscale(
    services: ServicesDep,
    request: Request,
    response: Response,
    image: Annotated[
        UploadFile | None, File(description="the low-resolution image (PNG, JPEG, WebP, BMP, GIF, TIFF)")
    ] = None,
    frames: Annotated[
        list[UploadFile] | None,
        File(description="instead of `image`: 2 or more frames of one scene (a burst), same size and mode"),
    ] = None,
    reference_frame: Annotated[
        int, Form(ge=0, description="burst: index of the frame the output is aligned to")
    ] = 0,
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
    """Submit an image (or a burst of frames) for super-resolution; answers 202 with the job."""
    if (image is None) == (not frames):
        message = "send exactly one of `image` (one file) or `frames` (a burst)"
        # the same detail shape as FastAPI's own validation errors
        raise ApiError(422, "invalid_request", message, [{"field": "image", "message": message}])
    limit = services.settings.max_frames
    if frames and not 2 <= len(frames) <= limit:
        raise ApiError(
            422 if len(frames) < 2 else 413,
            "invalid_frame_count" if len(frames) < 2 else "too_many_frames",
            f"a burst needs 2 to {limit} frames, got {len(frames)}",
            {"field": "frames", "frames": len(frames), "limit": limit},
        )
    frame_bytes = [await f.read() for f in frames] if frames else None
    image_bytes = frame_bytes[0] if frame_bytes else await image.read()  # type: ignore[union-attr]
    reference_bytes = await reference.read() if reference is not None else None
    principal = principal_of(request)

    def submit() -> JobView:
        if frame_bytes is not None:
            return _submit_burst(
                services, frame_bytes, reference_bytes, scale, model or None, format, reference_frame, principal.owner
            )
        return _submit(services, image_bytes, reference_bytes, scale, model or None, format, principal.owner)

    try:
        if idempotency_key is None:
            view = await run_in_threadpool(submit)
        else:
            fields = {"scale": scale, "model": model or None, "format": format, "reference_frame": reference_frame}
            view, replayed = await run_in_threadpool(
                services.idempotency.submit_once,
                principal.scope_id,
                idempotency_key,
                fingerprint(fields, [*(frame_bytes or [image_bytes]), reference_bytes]),
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
    card = _resolve(services, model, scale, "single")
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


def _resolve(services: Services, model: str | None, scale: int, kind: str) -> ModelCard:
    try:
        return services.catalog.resolve(model, scale, kind=kind)
    except UnknownModelError as exc:
        raise ApiError(422, "unknown_model", exc.message, {"valid_models": exc.valid}) from exc
    except UnsupportedScaleError as exc:
        raise ApiError(422, "unsupported_scale", exc.message, {"supported_scales": exc.scales}) from exc


def _submit_burst(
    services: Services,
    frames: list[bytes],
    reference: bytes | None,
    scale: int,
    model: str | None,
    fmt: str,
    reference_frame: int,
    owner: str | None,
) -> JobView:
    """Validate a burst: every frame decodes, all share size and mode, counts within the limits of
    the service and of the model; any failure is a 4xx naming the offending frame."""
    settings = services.settings
    card = _resolve(services, model, scale, "burst")
    if not card.min_frames <= len(frames) <= card.max_frames:
        raise ApiError(
            422,
            "invalid_frame_count",
            f"model {card.name!r} takes {card.min_frames} to {card.max_frames} frames, got {len(frames)}",
            {"field": "frames", "min_frames": card.min_frames, "max_frames": card.max_frames},
        )
    if reference_frame >= len(frames):
        raise ApiError(
            422,
            "invalid_reference_frame",
            f"reference_frame {reference_frame} is out of range for {len(frames)} frames",
            {"field": "reference_frame"},
        )
    checked = []
    modes = []
    for i, data in enumerate(frames):
        field = f"frames[{i}]"
        checked.append(
            check_image(data, field=field, max_pixels=settings.max_input_pixels, decode_slots=services.decode_slots)
        )
        modes.append(imaging.probe(data).mode)
        first, this = checked[0], checked[i]
        if (this.width, this.height) != (first.width, first.height):
            raise ApiError(
                422,
                "frame_mismatch",
                f"{field} is {this.width}x{this.height}, frames[0] is {first.width}x{first.height}",
                {"field": field, "frame": i},
            )
        if modes[i] != modes[0]:
            raise ApiError(
                422,
                "frame_mismatch",
                f"{field} has mode {modes[i]}, frames[0] has {modes[0]}",
                {"field": field, "frame": i},
            )
    base = checked[reference_frame]
    check_output_size(base, scale, settings.max_output_pixels)
    if reference is not None:
        ref = check_image(
            reference, field="reference", max_pixels=settings.max_output_pixels, decode_slots=services.decode_slots
        )
        check_reference(ref, base, scale)
    view = services.jobs.submit(
        Submission(
            model=card.name,
            scale=scale,
            format=fmt,
            image=frames[0],
            reference=reference,
            width=base.width,
            height=base.height,
            frames=len(frames),
            owner=owner,
            kind="burst",
            burst_frames=frames,
            reference_frame=reference_frame,
        )
    )
    services.metrics.jobs_submitted.labels(card.name).inc()
    return view
