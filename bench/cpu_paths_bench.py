"""Before/after of the CPU inference rewrites, side by side in one run on the same images:
"before" is the single-image path as recorded in the previous run of this benchmark (channels_last,
the tanh rewrite, MATLAB bicubic as a strided convolution, PyTorch's pixel_shuffle), "after" is
`load_descriptor` as shipped (bicubic as banded GEMMs, the NHWC pixel shuffle). One thread, each set
timed as the best of `--repeats` passes after a warm-up pass, the two paths alternating; outputs must
agree (the rewrites change no numbers beyond float rounding).

    python -m bench.cpu_paths_bench --out bench/results --tag cpu-paths
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench import host_description, served_catalog, write_results
from bench.anchor_bench import best_of_interleaved, eval_pairs, our_pass
from model_store import fast_resize, subpixel
from model_store.card import Catalog
from model_store.cpu_inference import NHWCPixelShuffle
from model_store.data import data_root
from model_store.registry import SRDescriptor, load_descriptor

log = logging.getLogger(__name__)

CASES = [("fsrcnn_x4", "Set14", 4), ("espcn_x4", "Set14", 4), ("fsrcnn_x2", "Set14", 2), ("espcn_x2", "Set14", 2)]


@contextmanager
def _previous_path() -> Iterator[None]:
    """Inside: bicubic as the strided convolution, PyTorch's pixel_shuffle in sub-pixel deconvolutions."""
    gemm, shuffle = fast_resize.CPU_GEMM, subpixel.pixel_shuffle
    fast_resize.CPU_GEMM, subpixel.pixel_shuffle = False, F.pixel_shuffle
    try:
        yield
    finally:
        fast_resize.CPU_GEMM, subpixel.pixel_shuffle = gemm, shuffle


def _before(card_name: str, scale: int, catalog: Catalog) -> SRDescriptor:
    """The previous CPU path's network: nn.PixelShuffle back in place of the NHWC one."""
    desc = load_descriptor(catalog.get(card_name), scale, catalog=catalog)
    for module in desc.module.modules():
        for name, child in module.named_children():
            if isinstance(child, NHWCPixelShuffle):
                setattr(module, name, nn.PixelShuffle(child.scale))
    return desc


def _on_previous_path(run_set: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
    with _previous_path():
        return run_set()


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    catalog = served_catalog()
    rows = []
    for name, dataset, scale in CASES:
        lrs = [lr for lr, _ in eval_pairs(data_root(), dataset, scale)]
        before = _before(name, scale, catalog)
        after = load_descriptor(catalog.get(name), scale, catalog=catalog)
        (out_b, sec_b), (out_a, sec_a) = best_of_interleaved(
            [partial(_on_previous_path, partial(our_pass, before, lrs)), partial(our_pass, after, lrs)], args.repeats)
        pairs = zip(out_a, out_b, strict=True)
        worst = max(int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) for a, b in pairs)
        rows.append({"model": name, "dataset": dataset, "scale": scale, "before_s": round(sec_b, 3),
                     "after_s": round(sec_a, 3), "speedup": round(sec_b / sec_a, 2), "max_abs_diff_8bit": worst})
        log.info("%s", rows[-1])
    machine = host_description()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"# CPU inference path, before / after ({args.tag})", "", f"Machine: {machine}  ", f"Date: {stamp}", "",
             f"One thread; whole set, one image at a time; best of {args.repeats} passes after a warm-up, before and "
             "after alternating. Before: bicubic (chroma, skips) as a strided convolution and PyTorch's "
             "pixel_shuffle; after: bicubic as banded GEMMs and the NHWC pixel shuffle (the shipped path). "
             "Both: channels_last, tanh as 2·sigmoid(2x) − 1, sub-pixel deconvolutions.", "",
             "| model | set | before s | after s | speed-up | max 8-bit difference |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['dataset']} | {r['before_s']} | {r['after_s']} | {r['speedup']}× | "
              f"{r['max_abs_diff_8bit']} |" for r in rows]
    write_results(Path(args.out), args.tag, {"machine": machine, "date": stamp, "rows": rows}, lines)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cpu_paths_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--tag", default="cpu-paths")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
