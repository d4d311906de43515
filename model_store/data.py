"""Training and evaluation data: benchmark LR/HR pairs (numpy, uint8) and an on-device patch sampler.

Training data never leave the device once loaded: every image is packed into one flat uint8 tensor,
and a batch is one gather (random image, random crop), per-sample flips/transposes, the MATLAB
bicubic downscale (the eval degradation) and 8-bit rounding of the LR, all on the training device
with a device-side generator, so the loop has no host round trips and needs no DataLoader workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from model_store.fast_resize import imresize_torch_cached
from model_store.resize import degrade, imresize, modcrop
from srserve.imaging import load_rgb_uint8

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
BENCHMARK_SETS = ("Set5", "Set14", "BSD100")
DEFAULT_TRAIN_SETS = ("T91", "SunHays80")


def data_root() -> Path:
    """The shared data folder: $SRSERVE_DATA_DIR, else ../shared/data beside the repository."""
    env = os.environ.get("SRSERVE_DATA_DIR")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data").resolve()


def default_train_dirs() -> list[Path]:
    return [data_root() / "train" / name for name in DEFAULT_TRAIN_SETS]


@dataclass(frozen=True)
class EvalPair:
    name: str
    hr: np.ndarray  # uint8 (H, W, 3), H and W multiples of the scale
    lr: np.ndarray  # uint8 (H/s, W/s, 3)


def load_pairs(folder: Path) -> list[EvalPair]:
    """`*_HR.png` / `*_LR.png` pairs of a folder (the layout of eval/<set>/x<s>/), sorted by name."""
    pairs = []
    for hr_path in sorted(folder.glob("*_HR.png")):
        stem = hr_path.name[: -len("_HR.png")]
        lr_path = folder / f"{stem}_LR.png"
        if not lr_path.is_file():
            raise FileNotFoundError(f"{hr_path} has no matching {lr_path.name}")
        pairs.append(EvalPair(stem, load_rgb_uint8(str(hr_path)), load_rgb_uint8(str(lr_path))))
    if not pairs:
        raise FileNotFoundError(f"no *_HR.png / *_LR.png pairs in {folder}")
    return pairs


def synthesize_pairs(hr_images: list[tuple[str, np.ndarray]], scale: int) -> list[EvalPair]:
    """Pairs for a scale the sets do not ship (x8): HR cropped to a multiple of the scale, LR made with
    the MATLAB antialiased bicubic and rounded to 8 bit, exactly as the shipped pairs were made."""
    pairs = []
    for name, hr in hr_images:
        hr = modcrop(hr, scale)
        lr = degrade(hr.astype(np.float64) / 255.0, scale)
        pairs.append(EvalPair(name, hr, np.rint(lr * 255.0).astype(np.uint8)))
    return pairs


@lru_cache(maxsize=32)
def benchmark_pairs(dataset: str, scale: int) -> tuple[EvalPair, ...]:
    """A benchmark set at a scale: the shipped pairs, or (x8) pairs made from the x4 HR images."""
    folder = data_root() / "eval" / dataset / f"x{scale}"
    if folder.is_dir():
        return tuple(load_pairs(folder))
    source = data_root() / "eval" / dataset / "x4"
    hr = [(p.name, p.hr) for p in load_pairs(source)]
    return tuple(synthesize_pairs(hr, scale))


def resolve_eval_pairs(dataset: str, scale: int) -> tuple[str, list[EvalPair]]:
    """`dataset` is a folder of pairs or the name of a benchmark set (Set5, Set14, BSD100)."""
    path = Path(dataset)
    if path.is_dir():
        return path.name if path.name not in (f"x{scale}",) else path.parent.name, load_pairs(path)
    if dataset in BENCHMARK_SETS:
        return dataset, list(benchmark_pairs(dataset, scale))
    raise FileNotFoundError(f"{dataset!r} is neither a folder of *_HR/*_LR pairs nor one of {BENCHMARK_SETS}")


def list_images(folders: list[Path]) -> list[Path]:
    files = []
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"training data folder {folder} does not exist")
        files += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {[str(f) for f in folders]}")
    return files


def validate_downscales(factors: Sequence[float]) -> tuple[float, ...]:
    bad = [f for f in factors if not 0.0 < f < 1.0]
    if bad:
        raise ValueError(f"scale-augmentation factors must lie in (0, 1), got {bad}")
    return tuple(factors)


def downscaled_copies(image: np.ndarray, factors: Sequence[float]) -> list[np.ndarray]:
    """`image` (uint8 HWC) shrunk by each factor with MATLAB's antialiased bicubic, 8-bit rounded: the
    "scaled" training sets of FSRCNN, VDSR and LapSRN. A shrunk photo typically packs more detail per
    pixel, like the small benchmark images, and each factor is new data for a network that sees only patches."""
    as_float = image.astype(np.float32) / 255.0
    return [np.clip(np.rint(imresize(as_float, scale=f) * 255.0), 0, 255).astype(np.uint8) for f in factors]


class PatchSampler:
    """All training images in device memory; `sample` returns augmented uint8 HR patches (B, 3, P, P).

    `downscales` adds a copy of every image shrunk by each factor (scale augmentation); crops are drawn
    uniformly over all of them, so a copy is drawn in proportion to its area."""

    def __init__(self, folders: list[Path], device: torch.device, seed: int, downscales: Sequence[float] = ()) -> None:
        self.files = list_images(folders)
        factors = validate_downscales(downscales)
        arrays = []
        for path in self.files:
            image = load_rgb_uint8(str(path))
            arrays += [image, *downscaled_copies(image, factors)]
        self.device = device
        self.heights = torch.tensor([a.shape[0] for a in arrays], dtype=torch.int64, device=device)
        self.widths = torch.tensor([a.shape[1] for a in arrays], dtype=torch.int64, device=device)
        sizes = [a.size for a in arrays]
        self.offsets = torch.tensor(np.cumsum([0, *sizes[:-1]]), dtype=torch.int64, device=device)
        self.pixels = torch.from_numpy(np.concatenate([a.reshape(-1) for a in arrays])).to(device)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self._cdf: dict[int, torch.Tensor] = {}

    @property
    def n_images(self) -> int:
        """Images in the pool, downscaled copies included."""
        return int(self.heights.numel())

    def _crop_cdf(self, patch: int) -> torch.Tensor:
        # sample images in proportion to their number of distinct crops: big photos are not
        # under-sampled and images smaller than the patch are never picked
        if patch not in self._cdf:
            crops = (self.heights - patch + 1).clamp(min=0) * (self.widths - patch + 1).clamp(min=0)
            if int(crops.sum()) == 0:
                raise ValueError(f"no training image is at least {patch}x{patch}")
            self._cdf[patch] = torch.cumsum(crops.double(), 0)
        return self._cdf[patch]

    def sample(self, batch: int, patch: int, augment: bool = True) -> torch.Tensor:
        g, dev = self.generator, self.device
        cdf = self._crop_cdf(patch)
        u = torch.rand(batch, generator=g, device=dev, dtype=torch.float64) * cdf[-1]
        n = torch.searchsorted(cdf, u, right=True).clamp_(max=self.n_images - 1)
        h, w = self.heights[n], self.widths[n]
        y0 = (torch.rand(batch, generator=g, device=dev) * (h - patch + 1)).long().clamp_(max=h - patch)
        x0 = (torch.rand(batch, generator=g, device=dev) * (w - patch + 1)).long().clamp_(max=w - patch)
        ar = torch.arange(patch, device=dev)
        # flat index of pixel (b, i, j, c) in the HWC-packed buffer
        base = self.offsets[n] + (y0 * w + x0) * 3
        idx = (base[:, None, None, None] + (ar[None, :, None, None] * w[:, None, None, None] * 3)
               + ar[None, None, :, None] * 3 + torch.arange(3, device=dev)[None, None, None, :])
        out = self.pixels[idx].permute(0, 3, 1, 2)  # (B, 3, P, P)
        if augment:  # the dihedral group: independent h-flip, v-flip and transpose per sample
            flips = torch.rand(3, batch, 1, 1, 1, generator=g, device=dev) < 0.5
            out = torch.where(flips[0], out.flip(-1), out)
            out = torch.where(flips[1], out.flip(-2), out)
            out = torch.where(flips[2], out.transpose(-1, -2), out)
        return out.contiguous()


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255.0).round_().clamp_(0.0, 255.0).div_(255.0)


def make_lr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """HR float in [0, 1] -> LR with the eval degradation: antialiased MATLAB bicubic, 8-bit rounded."""
    return quantize_8bit(imresize_torch_cached(hr, scale=1.0 / scale))
