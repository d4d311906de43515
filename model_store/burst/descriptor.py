"""The burst model as the worker sees it: `BurstDescriptor.__call__(frames, reference_frame)`.

It owns everything around the network: moving the reference frame first, registration and outlier
rejection, exposure normalisation, tiling (the HR feature maps of a long burst do not fit in memory
for large frames), clamping and inference mode. Every burst architecture takes
(frames (B, K, 3, h, w), shifts (B, K, 2) | None, weights (B, K) | None) with frame 0 the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from model_store.burst.fusion import normalize_exposure
from model_store.burst.registration import Registration, register_burst
from model_store.card import Catalog, ModelCard
from model_store.registry import load_descriptor
from model_store.tiling import TilePlan, plan_tiles

DEFAULT_TILE_PIXELS = 160 * 160  # LR pixels per frame per tile: bounds the HR feature maps' memory


@dataclass
class BurstResult:
    output: torch.Tensor  # (3, h*s, w*s) in [0, 1], on the reference frame's grid
    reports: list[dict[str, object]]  # per input frame, the fields of srserve.schemas.FrameReport
    registration: Registration = field(repr=False)


@dataclass
class BurstDescriptor:
    card: ModelCard
    scale: int
    module: nn.Module
    device: torch.device
    receptive_field: int
    tile_pixels: int = DEFAULT_TILE_PIXELS

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def min_frames(self) -> int:
        return self.card.min_frames

    @property
    def max_frames(self) -> int:
        return self.card.max_frames

    def to(self, device: torch.device | str) -> BurstDescriptor:
        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, reference_frame: int = 0) -> BurstResult:
        """frames: (K, 3, h, w) RGB float in [0, 1]. The output is aligned to `reference_frame`."""
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be (K, 3, h, w), got {tuple(frames.shape)}")
        k = frames.shape[0]
        if not 0 <= reference_frame < k:
            raise ValueError(f"reference_frame {reference_frame} out of range for {k} frames")
        order = [reference_frame, *[i for i in range(k) if i != reference_frame]]
        burst = frames[order].to(self.device, torch.float32)[None]
        reg = register_burst(burst)
        keep = ~reg.rejected[0]
        weights = torch.where(keep, reg.confidence[0].clamp(min=0.05, max=1.0), torch.zeros_like(reg.confidence[0]))
        kept = torch.nonzero(keep).flatten()
        used = burst[:, kept]
        shifts = reg.shifts[:, kept]
        used, gains = normalize_exposure(used, shifts)
        out = self._run_tiled(used, shifts, weights[kept][None])
        share = weights / weights.sum().clamp(min=1e-8)
        reports: list[dict[str, object]] = []
        gain_of = {int(j): float(gains[0, n]) for n, j in enumerate(kept)}
        for pos, idx in enumerate(order):
            reports.append({
                "index": idx,
                "shift_y": round(float(reg.shifts[0, pos, 0]), 4),
                "shift_x": round(float(reg.shifts[0, pos, 1]), 4),
                "weight": round(float(share[pos]), 4),
                "rejected": bool(reg.rejected[0, pos]),
                "reason": reg.reasons[0][pos],
                "confidence": round(float(reg.confidence[0, pos]), 4),
                "gain": round(gain_of.get(pos, 1.0), 4),
            })
        reports.sort(key=lambda r: int(r["index"]))  # type: ignore[call-overload]
        return BurstResult(output=out[0].clamp(0.0, 1.0), reports=reports, registration=reg)

    def _run_tiled(self, frames: torch.Tensor, shifts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        c, h, w = frames.shape[-3:]
        s = self.scale
        if h * w <= self.tile_pixels:
            return self._forward(frames, shifts, weights)
        plan = self.plan_for(h, w, float(shifts.abs().max()))
        out = torch.empty(1, c, h * s, w * s, device=frames.device)
        for t in plan.tiles:
            window = frames[..., t.y0 : t.y0 + t.h, t.x0 : t.x0 + t.w]
            up = self._forward(window, shifts, weights)
            cy0, cy1 = t.core_y0 - t.y0, t.core_y1 - t.y0
            cx0, cx1 = t.core_x0 - t.x0, t.core_x1 - t.x0
            out[..., t.core_y0 * s : t.core_y1 * s, t.core_x0 * s : t.core_x1 * s] = up[
                ..., cy0 * s : cy1 * s, cx0 * s : cx1 * s
            ]
        return out

    def plan_for(self, h: int, w: int, max_shift: float) -> TilePlan:
        """Tiles of about `tile_pixels` LR pixels; each holds the context of its core in every frame:
        receptive field + the largest shift (+2 for the splatting kernel)."""
        overlap = self.receptive_field + math.ceil(max_shift) + 2
        return plan_tiles(h, w, max(int(math.sqrt(self.tile_pixels)), 4 * overlap), overlap)

    def _forward(self, frames: torch.Tensor, shifts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.module(frames, shifts, weights).float()


def load_burst_descriptor(card: ModelCard, scale: int, *, catalog: Catalog | None = None,
                          device: str | torch.device = "cpu", tile_pixels: int = DEFAULT_TILE_PIXELS
                          ) -> BurstDescriptor:
    """Build a burst network from its card (weights verified by registry.load_descriptor)."""
    if card.kind != "burst":
        raise ValueError(f"model {card.name!r} is a {card.kind} model, not a burst model")
    single = load_descriptor(card, scale, catalog=catalog, device=device, channels_last=False)
    rf = int(getattr(single.module, "receptive_field", card.receptive_field))
    return BurstDescriptor(card=card, scale=scale, module=single.module, device=single.device,
                           receptive_field=max(rf, card.receptive_field), tile_pixels=tile_pixels)


def frames_from_numpy(frames: list[np.ndarray]) -> torch.Tensor:
    """K arrays (h, w, 3), float in [0, 1] or uint8 -> (K, 3, h, w) float32 tensor."""
    arrs = [f.astype(np.float32) / 255.0 if f.dtype == np.uint8 else f.astype(np.float32) for f in frames]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError(f"all frames must have the same shape, got {sorted(shapes)}")
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()
