"""Evaluate burst models on bursts synthesised from the benchmark sets, and build the result tables.

    python -m model_store.burst.evaluate_burst --models burst_shift_add,shift_pool_x4 --sets Set14,BSD100 \
        --k-table 1,2,4,8,16 --weights runs/ --device cuda --markdown tables.md

Protocol: for image n of a set (../shared/data/eval/<set>/x<s>/*_HR.png), one burst of `max(K)` frames
is synthesised with seed `seed + n` (model_store.burst.synth: shifts uniform in +-2 LR px, noise
sigma 2/255 by default, 8-bit frames); a K-frame burst is its first K frames, so a bigger K only adds
frames. The outlier variant is the same bursts with one of frames 1..K-1 replaced by an outlier
(unrelated content or a gross misalignment). Bursts go through `BurstDescriptor` (registration,
rejection, exposure normalisation) like a job; single-image models (bicubic,
`Catalog().default_for(scale)`) see the reference frame.
PSNR/SSIM as the single-image tables (Y BT.601, shave = scale, 8-bit output).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from model_store.burst.descriptor import BurstDescriptor, load_burst_descriptor
from model_store.burst.synth import BurstConfig, synth_burst
from model_store.card import Catalog
from model_store.data import data_root
from model_store.evaluate import uint8_to_batch
from model_store.metrics import quality_y
from model_store.registry import SRDescriptor, load_descriptor
from model_store.resize import modcrop
from srserve.imaging import load_rgb_uint8, to_uint8

log = logging.getLogger(__name__)

EVAL_SEED = 2024
EVAL_NOISE = 2.0 / 255.0
EVAL_MAX_SHIFT = 2.0
EVAL_FRAMES = 16  # every evaluation burst has 16 frames; a K-frame test uses the first K
PROTOCOL = ("burst: first K of 16 synthesised frames (seed 2024 + image index, shifts +-2 LR px, noise 2/255, "
            "8-bit); Y BT.601, shave=scale")


@dataclass(frozen=True)
class EvalBurst:
    name: str
    hr: np.ndarray  # uint8 (H, W, 3)
    frames: torch.Tensor  # (K, 3, h, w) float in [0, 1]
    shifts: torch.Tensor  # (K, 2) true shifts
    outlier: torch.Tensor  # (K,) bool


def hr_images(dataset: str, scale: int) -> list[tuple[str, np.ndarray]]:
    folder = Path(dataset) if Path(dataset).is_dir() else data_root() / "eval" / dataset / f"x{scale}"
    files = sorted(folder.glob("*_HR.png"))
    if not files:
        raise FileNotFoundError(f"no *_HR.png in {folder}")
    out = []
    for f in files:
        hr = load_rgb_uint8(str(f))
        out.append((f.name[: -len("_HR.png")], modcrop(hr, scale)))
    return out


@lru_cache(maxsize=16)
def eval_bursts(dataset: str, scale: int, frames: int = EVAL_FRAMES, *, outlier_below: int | None = None,
                seed: int = EVAL_SEED, noise: float = EVAL_NOISE, limit: int | None = None) -> tuple[EvalBurst, ...]:
    """The fixed evaluation bursts of a set (cached: every model and K reuses them). With
    `outlier_below` = K, one of frames 1..K-1 is an outlier and everything else (shifts, noise) is
    identical to the clean bursts, so the difference measures the outlier alone."""
    cfg = BurstConfig(frames=frames, scale=scale, max_shift=EVAL_MAX_SHIFT, noise_sigma=noise,
                      outlier_prob=1.0 if outlier_below else 0.0, outlier_below=outlier_below)
    bursts = []
    for n, (name, hr) in enumerate(hr_images(dataset, scale)[:limit]):
        b = synth_burst(uint8_to_batch(hr), cfg, seed=seed + n)
        bursts.append(EvalBurst(name, hr, b.frames[0], b.shifts[0], b.outlier[0]))
    return tuple(bursts)


@dataclass
class BurstScore:
    model: str
    dataset: str
    frames: int
    outlier: bool
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    seconds: float = 0.0
    rejected_outliers: int = 0  # bursts whose outlier frame was rejected by registration
    rejected_inliers: int = 0  # good frames wrongly rejected, summed over bursts

    @property
    def psnr_y(self) -> float:
        return float(np.mean(self.psnr))

    @property
    def ssim_y(self) -> float:
        return float(np.mean(self.ssim))


def run_model(model: BurstDescriptor | SRDescriptor, bursts: tuple[EvalBurst, ...], k: int, *, dataset: str,
              outlier: bool = False) -> BurstScore:
    """Score a burst model on the first k frames (a single-image model on the reference frame)."""
    score = BurstScore(model.name, dataset, k, outlier)
    t0 = time.perf_counter()
    for b in bursts:
        if isinstance(model, BurstDescriptor):
            res = model(b.frames[:k].to(model.device))
            out = res.output
            for r in res.reports:
                idx = int(r["index"])  # type: ignore[call-overload]
                if r["rejected"] and bool(b.outlier[idx]):
                    score.rejected_outliers += 1
                elif r["rejected"]:
                    score.rejected_inliers += 1
        else:
            out = model(b.frames[:1].to(model.device))[0]
        sr = to_uint8(out.permute(1, 2, 0).float().cpu().numpy())
        q = quality_y(sr, b.hr, shave=model.scale)
        score.psnr.append(q.psnr_y)
        score.ssim.append(q.ssim_y)
    score.seconds = time.perf_counter() - t0
    return score


def load_model(name: str, scale: int, *, catalog: Catalog, device: str) -> BurstDescriptor | SRDescriptor:
    """A burst model by name/family, or `single` (the best single-image model), or `bicubic`."""
    if name == "single":
        card = catalog.default_for(scale)
        if card is None:
            raise LookupError(f"no single-image model for x{scale}")
        return load_descriptor(card, scale, catalog=catalog, device=device)
    if name in catalog.names("single"):
        return load_descriptor(catalog.get(name), scale, catalog=catalog, device=device)
    card = catalog.resolve(name, scale, kind="burst")
    return load_burst_descriptor(card, scale, catalog=catalog, device=device)


def burst_tables(models: list[str], sets: list[str], *, scale: int = 4, frames: int = 8,
                 k_table: list[int] | None = None, outlier: bool = True, weights_dirs: list[Path] | None = None,
                 device: str = "cpu", limit: int | None = None, seed: int = EVAL_SEED) -> tuple[str, list[BurstScore]]:
    """Run every model on every set and return (markdown, scores). Single-image models ('bicubic',
    'single') appear once per set (they see only the reference frame)."""
    catalog = Catalog.load(weights_dirs)
    ks = sorted(set(k_table or []) | {frames})
    kmax = max(*ks, EVAL_FRAMES)
    scores: list[BurstScore] = []
    loaded: dict[str, BurstDescriptor | SRDescriptor] = {}
    for m in models:  # keyed by the resolved name: 'single' may well be bicubic
        desc = load_model(m, scale, catalog=catalog, device=device)
        loaded.setdefault(desc.name, desc)
    for ds in sets:
        clean = eval_bursts(ds, scale, kmax, seed=seed, limit=limit)
        for m, desc in loaded.items():
            if not isinstance(desc, BurstDescriptor):
                scores.append(run_model(desc, clean, 1, dataset=ds))
                log.info("%s %s: %.2f dB", desc.name, ds, scores[-1].psnr_y)
                continue
            for k in ks:
                scores.append(run_model(desc, clean, k, dataset=ds))
                log.info("%s %s K=%d: %.2f dB (%.0f s)", m, ds, k, scores[-1].psnr_y, scores[-1].seconds)
            if outlier:
                dirty = eval_bursts(ds, scale, kmax, outlier_below=frames, seed=seed, limit=limit)
                scores.append(run_model(desc, dirty, frames, dataset=ds, outlier=True))
                log.info("%s %s K=%d + outlier: %.2f dB", m, ds, frames, scores[-1].psnr_y)
    return format_tables(scores, sets, frames, ks, scale), scores


def format_tables(scores: list[BurstScore], sets: list[str], frames: int, ks: list[int], scale: int) -> str:
    def find(model: str, ds: str, k: int, outlier: bool = False) -> BurstScore | None:
        return next((s for s in scores if s.model == model and s.dataset == ds and s.frames == k
                     and s.outlier == outlier), None)

    models = list(dict.fromkeys(s.model for s in scores))
    burst_models = [m for m in models if any(s.model == m and s.frames > 1 for s in scores)]
    single_models = [m for m in models if m not in burst_models]
    lines = [f"### x{scale}, K = {frames}, PSNR (dB) / SSIM, Y channel\n",
             "| model | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for m in single_models:
        cells = [f"{s.psnr_y:.2f} / {s.ssim_y:.4f}" if (s := find(m, ds, 1)) else "-" for ds in sets]
        lines.append(f"| {m} (reference frame only) | " + " | ".join(cells) + " |")
    for m in burst_models:
        cells = [f"{s.psnr_y:.2f} / {s.ssim_y:.4f}" if (s := find(m, ds, frames)) else "-" for ds in sets]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", f"### PSNR (dB) against the number of frames K, x{scale}\n",
              "| model | set | " + " | ".join(f"K={k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    for m in burst_models:
        for ds in sets:
            cells = [f"{s.psnr_y:.2f}" if (s := find(m, ds, k)) else "-" for k in ks]
            lines.append(f"| {m} | {ds} | " + " | ".join(cells) + " |")
    if any(s.outlier for s in scores):
        lines += ["", f"### One outlier frame among K = {frames}, x{scale}\n",
                  "| model | set | clean | with outlier | cost (dB) | outlier rejected | good frames rejected |",
                  "|---|---|---|---|---|---|---|"]
        for m in burst_models:
            for ds in sets:
                c, o = find(m, ds, frames), find(m, ds, frames, True)
                if c and o:
                    lines.append(f"| {m} | {ds} | {c.psnr_y:.2f} | {o.psnr_y:.2f} | {c.psnr_y - o.psnr_y:.2f} | "
                                 f"{o.rejected_outliers}/{len(o.psnr)} | {o.rejected_inliers} |")
    lines += ["", f"Protocol: {PROTOCOL}."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate_burst", description="burst SR evaluation tables")
    p.add_argument("--models", default="bicubic,single,burst_shift_add",
                   help="comma list: burst model names/families, 'bicubic', 'single' (best single-image model)")
    p.add_argument("--sets", default="Set14,BSD100", help="comma list of benchmark sets or folders")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--frames", "--burst", dest="frames", type=int, default=8, help="K of the main table")
    p.add_argument("--k-table", default="1,2,4,8,16", help="comma list of K for the frames table ('' = none)")
    p.add_argument("--no-outlier", action="store_true", help="skip the one-outlier-among-K test")
    p.add_argument("--weights", type=Path, action="append", default=[], help="extra folder of cards + weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--limit", type=int, default=None, help="first N images of each set (smoke runs)")
    p.add_argument("--seed", type=int, default=EVAL_SEED)
    p.add_argument("--markdown", type=Path, default=None, help="also write the tables to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:  # `srserve eval-burst` has configured logging already
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ks = [int(k) for k in args.k_table.split(",") if k.strip()]
    with torch.no_grad():  # scoped: main() also runs inside other processes (srserve eval-burst, tests)
        text, _ = burst_tables([m.strip() for m in args.models.split(",") if m.strip()],
                               [s.strip() for s in args.sets.split(",") if s.strip()], scale=args.scale,
                               frames=args.frames, k_table=ks, outlier=not args.no_outlier,
                               weights_dirs=args.weights, device=args.device, limit=args.limit, seed=args.seed)
    sys.stdout.write(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
