"""Pack ../shared/data into a form small enough to travel to a rented GPU box (64 MiB per call).

Lossless WebP (about 2/3 of PNG) and, for the eval sets, one HR canvas per image instead of three:
the x2/x3/x4 HR files are top-left crops (modcrops) of the same picture, so we store their union
plus the crop sizes and rebuild each HR exactly on the other side. `unpack` writes the standard
layout (`train/<set>/*.png`, `eval/<set>/x<s>/img_NNN_{HR,LR}.png`) and checks every pixel.

    python bench/gpu/pack_data.py pack --what train --out .gpu/train [--budget-mb 30]
    python bench/gpu/pack_data.py pack --what eval --out .gpu/eval [--sets Set5 Set14]
    python bench/gpu/pack_data.py unpack --src .gpu/train --out /tmp/data   (on the GPU box)
"""

from __future__ import annotations

import argparse
import json
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger("pack_data")
SCALES = (2, 3, 4)


def _webp(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, "WEBP", lossless=True, quality=100, method=4)


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def _pack_train_one(args: tuple[Path, Path]) -> None:
    src, dst = args
    _webp(_rgb(src), dst)


def _pack_eval_image(args: tuple[Path, str, Path]) -> dict[str, list[int]]:
    set_dir, stem, out = args
    hrs = {s: _rgb(set_dir / f"x{s}" / f"{stem}_HR.png") for s in SCALES}
    h = max(a.shape[0] for a in hrs.values())
    w = max(a.shape[1] for a in hrs.values())
    union = np.zeros((h, w, 3), np.uint8)
    for a in hrs.values():
        union[: a.shape[0], : a.shape[1]] = a
    for s, a in hrs.items():  # the crops must agree where they overlap
        assert np.array_equal(union[: a.shape[0], : a.shape[1]], a), f"{stem} x{s} is not a crop of the union"
        _webp(_rgb(set_dir / f"x{s}" / f"{stem}_LR.png"), out / f"x{s}" / f"{stem}_LR.webp")
    _webp(union, out / f"{stem}_HRU.webp")
    return {f"x{s}": [int(a.shape[0]), int(a.shape[1])] for s, a in hrs.items()}


def pack(what: str, data: Path, out: Path, budget_mb: float | None = None, sets: list[str] | None = None) -> None:
    with ProcessPoolExecutor() as pool:
        if what == "train":
            jobs = [(p, out / p.parent.name / (p.stem + ".webp")) for p in sorted((data / "train").glob("*/*.png"))]
            list(pool.map(_pack_train_one, jobs))
            if budget_mb is not None:
                _trim(out, budget_mb)
            return
        for set_dir in sorted(d for d in (data / "eval").iterdir() if sets is None or d.name in sets):
            stems = sorted(p.name[: -len("_HR.png")] for p in (set_dir / "x2").glob("*_HR.png"))
            sizes = pool.map(_pack_eval_image, [(set_dir, s, out / set_dir.name) for s in stems])
            (out / set_dir.name / "sizes.json").write_text(json.dumps(dict(zip(stems, sizes, strict=True))))


def _trim(out: Path, budget_mb: float) -> None:
    """Keep the smallest sets whole (T91 before SunHays80), then as many images of the next as fit."""
    sets = sorted((d for d in out.iterdir() if d.is_dir()), key=lambda d: sum(f.stat().st_size for f in d.iterdir()))
    used, dropped = 0, 0
    for path in [f for d in sets for f in sorted(d.glob("*.webp"))]:
        size = path.stat().st_size
        if used + size > budget_mb * 1024 * 1024:
            path.unlink()
            dropped += 1
        else:
            used += size
    log.info("kept %.1f MB of training images, dropped %d to fit %.0f MB", used / 2**20, dropped, budget_mb)


def _unpack_one(args: tuple[Path, Path]) -> None:
    src, dst = args
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(src)).save(dst, "PNG", compress_level=1)


def unpack(src: Path, out: Path) -> None:
    jobs: list[tuple[Path, Path]] = []
    sizes_files = list(src.glob("*/sizes.json"))
    with ProcessPoolExecutor() as pool:
        if not sizes_files:  # training images
            jobs = [(p, out / p.parent.name / (p.stem + ".png")) for p in src.glob("*/*.webp")]
            list(pool.map(_unpack_one, jobs))
            return
        for sizes_file in sizes_files:
            set_dir = sizes_file.parent
            for lr in set_dir.glob("x*/*_LR.webp"):
                jobs.append((lr, out / set_dir.name / lr.parent.name / (lr.stem + ".png")))
        list(pool.map(_unpack_one, jobs))
        for sizes_file in sizes_files:
            set_dir = sizes_file.parent
            for stem, per_scale in json.loads(sizes_file.read_text()).items():
                union = _rgb(set_dir / f"{stem}_HRU.webp")
                for sx, (h, w) in per_scale.items():
                    dst = out / set_dir.name / sx / f"{stem}_HR.png"
                    Image.fromarray(union[:h, :w]).save(dst, "PNG", compress_level=1)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    p = argparse.ArgumentParser()
    p.add_argument("action", choices=["pack", "unpack"])
    p.add_argument("--what", choices=["train", "eval"], default="train")
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--src", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--budget-mb", type=float, help="pack train: keep at most this many MB (T91 first)")
    p.add_argument("--sets", nargs="+", help="pack eval: only these sets (default all)")
    a = p.parse_args()
    if a.action == "pack":
        pack(a.what, a.data, a.out, a.budget_mb, a.sets)
    else:
        unpack(a.src, a.out)
    log.info("done: %s", a.out)


if __name__ == "__main__":
    main()
