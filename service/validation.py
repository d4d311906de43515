"""Upload checks, cheapest first: header probe and pixel limits without decoding (a decompression
bomb never gets decoded), then a bounded full decode to catch truncated data at upload time instead
of as a failed job later."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from service.errors import ApiError
from srserve import imaging


@dataclass(frozen=True)
class CheckedImage:
    width: int  # after EXIF orientation: what the worker will see
    height: int
    frames: int
    format: str


def _image_error(exc: imaging.ImageError, what: str) -> ApiError:
    return ApiError(exc.http_status, exc.code, f"{what}: {exc.message}", {"field": what})


def check_image(
    data: bytes,
    *,
    field: str,
    max_pixels: int,
    decode_slots: threading.BoundedSemaphore,
    max_frames: int | None = None,
) -> CheckedImage:
    """Validate one uploaded image; raises ApiError (413 over the limit, 422 unusable)."""
    if not data:
        raise ApiError(422, "empty_file", f"{field}: the file is empty", {"field": field})
    try:
        info = imaging.probe(data)
        imaging.check_pixels(info, max_pixels, field)
    except imaging.ImageError as exc:
        raise _image_error(exc, field) from exc
    if max_frames is not None and info.n_frames > max_frames:  # from the header: before any decode
        raise ApiError(
            413,
            "too_many_frames",
            f"{field} has {info.n_frames} frames, over the limit of {max_frames}",
            {"field": field, "frames": info.n_frames, "limit": max_frames},
        )
    # a full decode is the only reliable truncation check for every format; bounded concurrency
    # keeps the API's memory use flat under a burst of large uploads
    with decode_slots:
        try:
            decoded = imaging.decode(data, max_pixels)
        except imaging.ImageError as exc:
            raise _image_error(exc, field) from exc
        except MemoryError as exc:
            message = f"{field}: not enough memory to check this image"
            raise ApiError(413, "image_too_large", message, {"field": field}) from exc
        width, height = decoded.width, decoded.height
        del decoded
    return CheckedImage(width, height, info.n_frames, info.format)


def check_output_size(image: CheckedImage, scale: int, max_output_pixels: int) -> None:
    out_w, out_h = image.width * scale, image.height * scale
    if out_w * out_h > max_output_pixels:
        raise ApiError(
            413,
            "output_too_large",
            f"the output would be {out_w}x{out_h} = {out_w * out_h} pixels, "
            f"over the limit of {max_output_pixels}",
            {"width": out_w, "height": out_h, "limit_pixels": max_output_pixels},
        )


def check_reference(reference: CheckedImage, image: CheckedImage, scale: int) -> None:
    want = (image.width * scale, image.height * scale)
    if (reference.width, reference.height) != want:
        raise ApiError(
            422,
            "reference_size_mismatch",
            f"reference is {reference.width}x{reference.height}; "
            f"it must be scale x the input = {want[0]}x{want[1]}",
            {
                "expected": {"width": want[0], "height": want[1]},
                "got": {"width": reference.width, "height": reference.height},
            },
        )
