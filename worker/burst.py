"""The worker stage of a burst job: K decoded frames -> one super-resolved image + per-frame reports.

    output, reports = run_burst(card_or_descriptor, frames, scale, reference_frame)

`frames` are float RGB arrays (h, w, 3) in [0, 1] as `srserve.imaging` decodes them (uint8 is also
accepted); the output is float RGB (h*s, w*s, 3) in [0, 1] on the reference frame's grid; each report
is a dict with the fields of `srserve.schemas.FrameReport` (index, shift_x, shift_y in LR pixels
relative to the reference, weight = share of the fusion, rejected, reason) plus confidence and gain.
Registration, outlier rejection, exposure normalisation and tiling happen inside
`model_store.burst.descriptor.BurstDescriptor`; this module only validates, converts and maps
failures onto the worker's `JobError` codes.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import numpy as np

from model_store.card import ModelCard
from worker.pipeline import InferenceFailedError, InvalidPayloadError

if TYPE_CHECKING:
    from model_store.burst.descriptor import BurstDescriptor
    from model_store.card import Catalog

log = logging.getLogger(__name__)


class BurstDescriptorCache:
    """Loads each burst (model, scale) once per process, like `worker.pipeline.DescriptorCache`."""

    def __init__(self, catalog: Catalog | None, device: str) -> None:
        self.catalog = catalog
        self.device = device
        self._items: dict[tuple[str, int], BurstDescriptor] = {}
        self._lock = threading.Lock()

    def get(self, card: ModelCard, scale: int) -> BurstDescriptor:
        key = (card.name, scale)
        with self._lock:
            found = self._items.get(key)
            if found is None:
                from model_store.burst.descriptor import load_burst_descriptor

                log.info("loading burst model %s x%d on %s", card.name, scale, self.device)
                found = load_burst_descriptor(card, scale, catalog=self.catalog, device=self.device)
                self._items[key] = found
            return found


def validate_frames(frames: list[np.ndarray], card: ModelCard, scale: int, reference_frame: int) -> None:
    """The checks the API also makes, repeated here because the worker must not trust its payload."""
    if scale not in card.scales:
        raise InvalidPayloadError(f"model {card.name!r} does not support scale {scale}; it supports {card.scales}")
    if not card.min_frames <= len(frames) <= card.max_frames:
        raise InvalidPayloadError(
            f"model {card.name!r} takes {card.min_frames} to {card.max_frames} frames, got {len(frames)}")
    if not 0 <= reference_frame < len(frames):
        raise InvalidPayloadError(f"reference_frame {reference_frame} is out of range for {len(frames)} frames")
    first = frames[0].shape
    for i, f in enumerate(frames):
        if f.ndim != 3 or f.shape[2] != 3:
            raise InvalidPayloadError(f"frame {i}: expected an (h, w, 3) RGB array, got shape {f.shape}")
        if f.shape != first:
            raise InvalidPayloadError(f"frame {i} is {f.shape[1]}x{f.shape[0]}, frame 0 is {first[1]}x{first[0]}")


def run_burst(model: BurstDescriptor | ModelCard, frames: list[np.ndarray], scale: int, reference_frame: int = 0,
              *, catalog: Catalog | None = None, device: str = "cpu",
              cache: BurstDescriptorCache | None = None) -> tuple[np.ndarray, list[dict[str, object]]]:
    """Fuse a burst. `model` is a loaded `BurstDescriptor` or a burst `ModelCard` (loaded through
    `cache` when given, else on `device`)."""
    import torch

    from model_store.burst.descriptor import BurstDescriptor, frames_from_numpy, load_burst_descriptor

    if isinstance(model, ModelCard):
        if model.kind != "burst":
            raise InvalidPayloadError(f"model {model.name!r} is a {model.kind} model, not a burst model")
        card = model
        desc = cache.get(card, scale) if cache else load_burst_descriptor(card, scale, catalog=catalog, device=device)
    else:
        desc = model
        card = desc.card
        if desc.scale != scale:
            raise InvalidPayloadError(f"descriptor is x{desc.scale}, job asks for x{scale}")
    assert isinstance(desc, BurstDescriptor)
    validate_frames(frames, card, scale, reference_frame)
    h, w = frames[0].shape[:2]
    try:
        result = desc(frames_from_numpy(frames).to(desc.device), reference_frame)
        output = result.output.permute(1, 2, 0).float().cpu().numpy()
    except torch.cuda.OutOfMemoryError as exc:
        torch.cuda.empty_cache()
        raise InferenceFailedError(f"out of device memory for a {len(frames)}-frame {w}x{h} burst") from exc
    except RuntimeError as exc:
        raise InferenceFailedError(f"{card.name} failed on a {len(frames)}-frame {w}x{h} burst: {exc}") from exc
    if output.shape != (h * scale, w * scale, 3):
        raise InferenceFailedError(f"{card.name} returned {output.shape}, expected {(h * scale, w * scale, 3)}")
    return np.ascontiguousarray(output), result.reports
