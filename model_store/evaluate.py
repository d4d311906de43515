"""Evaluate a single-image model on LR/HR pairs with the published protocol.

Every number goes through the worker's path: `SRDescriptor` (RGB in, Y-channel models get bicubic
chroma), the output rounded to 8 bit, then `model_store.metrics.quality_y` (Y, shave = scale).
Used by `srserve eval`, by training (periodic Set5, final card results) and by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from model_store.card import Catalog, EvalResult, ModelCard
from model_store.data import EvalPair
from model_store.metrics import lr_consistency_psnr, quality_y
from model_store.paper_results import paper_psnr, paper_ssim
from model_store.registry import SRDescriptor, load_descriptor
from srserve.imaging import to_uint8


@dataclass(frozen=True)
class ImageScore:
    image: str
    psnr_y: float
    ssim_y: float
    lr_consistency_psnr: float | None = None


@dataclass
class EvalReport:
    model: str
    scale: int
    dataset: str
    per_image: list[ImageScore] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return len(self.per_image)

    @property
    def psnr_y(self) -> float:
        return float(np.mean([s.psnr_y for s in self.per_image]))

    @property
    def ssim_y(self) -> float:
        return float(np.mean([s.ssim_y for s in self.per_image]))

    @property
    def lr_consistency_psnr(self) -> float | None:
        values = [s.lr_consistency_psnr for s in self.per_image if s.lr_consistency_psnr is not None]
        return float(np.mean(values)) if values else None

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "scale": self.scale,
            "dataset": self.dataset,
            "n_images": self.n_images,
            "psnr_y": round(self.psnr_y, 4),
            "ssim_y": round(self.ssim_y, 5),
            "per_image": [
                {"image": s.image, "psnr_y": round(s.psnr_y, 4), "ssim_y": round(s.ssim_y, 5)}
                for s in self.per_image
            ],
        }


def _dihedral(x: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    # k in 0..7: bit 2 = transpose, bits 0-1 = quarter turns; the inverse undoes them in reverse order
    turns, transpose = k % 4, k >= 4
    if not inverse:
        x = x.transpose(-1, -2) if transpose else x
        return torch.rot90(x, turns, dims=(-2, -1))
    x = torch.rot90(x, -turns, dims=(-2, -1))
    return x.transpose(-1, -2) if transpose else x


def super_resolve(desc: SRDescriptor, lr: np.ndarray, *, self_ensemble: bool = False,
                  dtype: torch.dtype | None = None) -> np.ndarray:
    """uint8 RGB LR -> uint8 RGB SR through the descriptor (optionally the x8 geometric ensemble)."""
    x = uint8_to_batch(lr, desc.device)
    if self_ensemble:
        out = sum(_dihedral(desc(_dihedral(x, k), dtype), k, inverse=True) for k in range(8)) / 8.0
    else:
        out = desc(x, dtype)
    assert isinstance(out, torch.Tensor)
    return first_image_uint8(out)


def uint8_to_batch(rgb: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (H, W, 3) -> a (1, 3, H, W) float batch in [0, 1] on `device` (moved as uint8: 4x fewer bytes)."""
    return torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float().div_(255.0)


def first_image_uint8(batch: torch.Tensor) -> np.ndarray:
    """The first (3, H, W) image of an RGB batch in [0, 1] as uint8 (H, W, 3), rounded like a job's output."""
    return to_uint8(batch[0].permute(1, 2, 0).float().cpu().numpy())


def evaluate_pairs(desc: SRDescriptor, pairs: list[EvalPair], *, dataset: str, self_ensemble: bool = False,
                   lr_consistency: bool = False, dtype: torch.dtype | None = None) -> EvalReport:
    report = EvalReport(model=desc.name, scale=desc.scale, dataset=dataset)
    for pair in pairs:
        sr = super_resolve(desc, pair.lr, self_ensemble=self_ensemble, dtype=dtype)
        q = quality_y(sr, pair.hr, shave=desc.scale)
        lrc = lr_consistency_psnr(sr, pair.lr, desc.scale) if lr_consistency else None
        report.per_image.append(ImageScore(pair.name, q.psnr_y, q.ssim_y, lrc))
    return report


def card_result(report: EvalReport, family: str) -> EvalResult:
    """A report as a card's result row, rounded, with the paper's figures for the cell beside it."""
    lrc = report.lr_consistency_psnr
    cell = (report.dataset, report.scale)
    return EvalResult(dataset=report.dataset, scale=report.scale, psnr_y=round(report.psnr_y, 4),
                      ssim_y=round(report.ssim_y, 5), paper_psnr_y=paper_psnr(family, *cell),
                      paper_ssim_y=paper_ssim(family, *cell),
                      lr_consistency_psnr=None if lrc is None else round(lrc, 3))


def descriptor_for(module: torch.nn.Module, card: ModelCard, scale: int, device: torch.device) -> SRDescriptor:
    """Wrap a live (training) module the way `load_descriptor` wraps a shipped one."""
    return SRDescriptor(card=card, scale=scale, module=module, device=device, channels=card.channels,
                        supports_half=card.half_precision_safe, receptive_field=card.receptive_field,
                        size_multiple=card.size_multiple)


def load_for_eval(name: str, scale: int, device: str, weights_dirs: list | None = None) -> SRDescriptor:
    catalog = Catalog.load(weights_dirs)
    card = catalog.resolve(name, scale)
    return load_descriptor(card, scale, catalog=catalog, device=device)
