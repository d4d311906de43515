"""The stages of one single-image job: decode → infer → encode → measure. Each is a small function
over arrays and bytes (no Redis, no RQ), so the batching engine can swap `infer` for its tiled,
cross-job batched version and keep the rest.

Failures raise `JobError` subclasses whose `code` is stable and reaches the API's job JSON.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from model_store import metrics as quality
from model_store.card import ModelCard
from model_store.resize import imresize
from srserve import imaging

if TYPE_CHECKING:
    from model_store.card import Catalog
    from model_store.registry import SRDescriptor

log = logging.getLogger(__name__)

PSNR_CAP_DB = 100.0  # identical images have infinite PSNR, which JSON cannot carry


# ---- errors ---------------------------------------------------------------------------------------


class JobError(Exception):
    """A job failure with a stable machine-readable code. `permanent` failures are not retried."""

    code = "job_failed"
    permanent = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidPayloadError(JobError):
    code = "invalid_payload"


class InputMissingError(JobError):
    code = "input_missing"  # the input blob expired or was deleted before the job ran


class DecodeFailedError(JobError):
    code = "decode_failed"


class ModelUnavailableError(JobError):
    code = "model_unavailable"


class InferenceFailedError(JobError):
    code = "inference_failed"
    permanent = False  # device hiccups and out-of-memory under load can pass


class OutOfMemoryError(JobError):
    code = "out_of_memory"  # even the smallest tile did not fit: retrying elsewhere may help
    permanent = False


class EncodeFailedError(JobError):
    code = "encode_failed"


class StorageFailedError(JobError):
    code = "storage_failed"
    permanent = False


class JobCanceledError(JobError):
    code = "canceled"


# ---- device and model cache -----------------------------------------------------------------------


def resolve_device(spec: str) -> str:
    """`auto` → `cuda` when a GPU is usable, else `cpu`; anything else is taken as given."""
    import torch

    if spec != "auto":
        if spec.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} requested but CUDA is not available")
        return spec
    return "cuda" if torch.cuda.is_available() else "cpu"


class DescriptorCache:
    """Loads each (model, scale) once per process; thread-safe so a batching engine can share it."""

    def __init__(self, catalog: Catalog, device: str) -> None:
        self.catalog = catalog
        self.device = device
        self._items: dict[tuple[str, int], SRDescriptor] = {}
        self._lock = threading.Lock()

    def get(self, card: ModelCard, scale: int) -> SRDescriptor:
        key = (card.name, scale)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                return found
            from model_store.registry import load_descriptor

            log.info("loading model %s x%d on %s", card.name, scale, self.device)
            descriptor = load_descriptor(card, scale, catalog=self.catalog, device=self.device)
            self._items[key] = descriptor
            return descriptor

    def loaded(self) -> list[tuple[str, int]]:
        with self._lock:
            return sorted(self._items)


# ---- stages ---------------------------------------------------------------------------------------


def decode(data: bytes, max_pixels: int, what: str = "input") -> imaging.DecodedImage:
    try:
        return imaging.decode(data, max_pixels)
    except imaging.ImageError as exc:
        raise DecodeFailedError(f"{what}: {exc.message}") from exc


def infer(descriptor: SRDescriptor, rgb: np.ndarray) -> np.ndarray:
    """Whole-image inference: float RGB (H, W, 3) in [0, 1] → (H*s, W*s, 3).

    The seam the tiling/batching engine replaces. Pads to the model's size multiple (reflect) and
    crops the output back.
    """
    import torch

    h, w = rgb.shape[:2]
    s = descriptor.scale
    m = max(1, descriptor.size_multiple)
    ph, pw = (-h) % m, (-w) % m
    x = rgb
    if ph or pw:
        mode = "reflect" if h > ph and w > pw else "edge"
        x = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode=mode)
    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))[None]
    try:
        out = descriptor(tensor.to(descriptor.device))
        result = out[0, :, : h * s, : w * s].permute(1, 2, 0).float().cpu().numpy()
    except torch.cuda.OutOfMemoryError as exc:
        torch.cuda.empty_cache()
        raise InferenceFailedError(
            f"out of device memory for a {w}x{h} input with {descriptor.name}"
        ) from exc
    except RuntimeError as exc:
        raise InferenceFailedError(f"{descriptor.name} failed on a {w}x{h} input: {exc}") from exc
    if result.shape != (h * s, w * s, 3):
        raise InferenceFailedError(f"{descriptor.name} returned {result.shape}, expected {(h * s, w * s, 3)}")
    return np.ascontiguousarray(result)


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Alpha is not what SR networks learn: it is upsampled with the same MATLAB bicubic."""
    return np.clip(imresize(alpha.astype(np.float64), scale=float(scale)), 0.0, 1.0).astype(np.float32)


def encode(
    image: imaging.DecodedImage, rgb: np.ndarray, alpha: np.ndarray | None, fmt: str
) -> tuple[bytes, list[str]]:
    try:
        return imaging.encode(rgb, fmt, alpha=alpha, bit_depth=image.bit_depth, icc_profile=image.icc_profile)
    except (OSError, ValueError) as exc:
        raise EncodeFailedError(f"could not encode the result as {fmt}: {exc}") from exc


@dataclass
class Measured:
    psnr_y: float | None = None
    ssim_y: float | None = None
    bicubic_psnr_y: float | None = None
    bicubic_ssim_y: float | None = None
    lr_consistency_psnr: float | None = None
    notes: list[str] = field(default_factory=list)


def _finite(value: float, notes: list[str], what: str) -> float:
    if math.isinf(value):
        notes.append(f"{what}: images identical, PSNR reported as {PSNR_CAP_DB:.0f} dB")
        return PSNR_CAP_DB
    return round(float(value), 4)


def measure(
    output_u8: np.ndarray,
    input_u8: np.ndarray,
    scale: int,
    reference_u8: np.ndarray | None = None,
    *,
    max_output_pixels: int,
) -> Measured:
    """Quality of one result with the published protocol (model_store.metrics): Y-channel PSNR/SSIM
    with shave = scale against the reference, the same for MATLAB bicubic, and LR-consistency."""
    m = Measured()
    h, w = output_u8.shape[:2]
    if h * w > max_output_pixels:
        m.notes.append(f"quality metrics skipped: output {w}x{h} is over the {max_output_pixels} pixel limit")
        return m
    m.lr_consistency_psnr = _finite(
        quality.lr_consistency_psnr(output_u8, input_u8, scale), m.notes, "LR-consistency"
    )
    if reference_u8 is not None:
        if reference_u8.shape != output_u8.shape:
            raise JobError(f"reference is {reference_u8.shape[1]}x{reference_u8.shape[0]}, output is {w}x{h}")
        q = quality.quality_y(output_u8, reference_u8, shave=scale)
        b = quality.quality_y(quality.bicubic_upscale_uint8(input_u8, scale), reference_u8, shave=scale)
        m.psnr_y = _finite(q.psnr_y, m.notes, "PSNR")
        m.ssim_y = round(q.ssim_y, 6)
        m.bicubic_psnr_y = _finite(b.psnr_y, m.notes, "bicubic PSNR")
        m.bicubic_ssim_y = round(b.ssim_y, 6)
    return m
