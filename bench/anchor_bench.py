"""Our FSRCNN/ESPCN/LapSRN against OpenCV's `dnn_superres` running the published models, on the same
images, same machine, same metric code: seconds per set and PSNR/SSIM (Y, shaved).

    srserve bench anchors            # needs `pip install -e .[anchors]` (OpenCV 5.0: 5.1 refuses .pb)

OpenCV is only a benchmark peer (never a runtime dependency); its models are read from
../shared/anchors/opencv_dnn_superres/.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import host_description, served_catalog, write_results
from model_store.evaluate import first_image_uint8, uint8_to_batch
from model_store.metrics import quality_y
from model_store.precision import cpu_serving_dtype
from model_store.registry import SRDescriptor, load_descriptor, rgb_to_ycbcr
from srserve.imaging import load_rgb_uint8

log = logging.getLogger(__name__)

PAIRS = [  # (our family, OpenCV model name, file stem)
    ("fsrcnn", "fsrcnn", "FSRCNN"),
    ("espcn", "espcn", "ESPCN"),
    ("lapsrn", "lapsrn", "LapSRN"),
]
CASES = [("Set5", 4), ("Set14", 4), ("BSD100", 4), ("Set14", 2)]


def eval_pairs(data: Path, dataset: str, scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    folder = data / "eval" / dataset / f"x{scale}"
    return [
        (load_rgb_uint8(str(lr)), load_rgb_uint8(str(lr).replace("_LR", "_HR")))
        for lr in sorted(folder.glob("*_LR.png"))
    ]


def _score(outs: list[np.ndarray], pairs: list[tuple[np.ndarray, np.ndarray]], scale: int) -> tuple[float, float]:
    qs = [quality_y(o, hr, scale) for o, (_, hr) in zip(outs, pairs, strict=True)]
    return float(np.mean([q.psnr_y for q in qs])), float(np.mean([q.ssim_y for q in qs]))


def _opencv_pass(sr: Any, lrs: list[np.ndarray]) -> list[np.ndarray]:  # cv2 has no type stubs
    return [sr.upsample(lr[..., ::-1].copy())[..., ::-1] for lr in lrs]  # OpenCV works in BGR


def our_pass(desc: SRDescriptor, lrs: list[np.ndarray], dtype: torch.dtype | None = None) -> list[np.ndarray]:
    return [first_image_uint8(desc(uint8_to_batch(lr), dtype)) for lr in lrs]


def _opencv_net(model_file: Path, *, winograd: bool) -> Any:
    import cv2

    cv2.dnn_superres.DnnSuperResImpl_create()  # registers the DepthToSpace layer ESPCN's graph needs
    net = cv2.dnn.readNetFromTensorflow(str(model_file))
    net.enableWinograd(winograd)
    return net


def _opencv_net_pass(net: Any, ys: list[np.ndarray]) -> list[np.ndarray]:
    import cv2

    outs = []
    for y in ys:
        net.setInput(cv2.dnn.blobFromImage(y))
        outs.append(net.forward())
    return outs


def _our_net_pass(desc: SRDescriptor, ys: list[torch.Tensor], dtype: torch.dtype | None) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [desc.network(y, dtype) for y in ys]


def net_only_seconds(desc: SRDescriptor, model_file: Path, lrs: list[np.ndarray], repeats: int,
                     dtype: torch.dtype | None = None) -> dict[str, float]:
    """The networks alone on the Y channel (no colour conversion, chroma resize or 8-bit rounding), ours vs
    OpenCV's with and without its Winograd 3x3 convolutions: where the per-image gap comes from."""
    y_planes = [rgb_to_ycbcr(uint8_to_batch(lr))[:, :1] for lr in lrs]
    ours = [y.contiguous(memory_format=torch.channels_last) if desc.channels_last else y.contiguous()
            for y in y_planes]
    theirs = [y[0, 0].numpy().astype(np.float32) for y in y_planes]
    timed = best_of_interleaved([
        partial(_our_net_pass, desc, ours, dtype),
        partial(_opencv_net_pass, _opencv_net(model_file, winograd=True), theirs),
        partial(_opencv_net_pass, _opencv_net(model_file, winograd=False), theirs),
    ], repeats)
    return dict(zip(["ours_net_s", "opencv_net_s", "opencv_net_no_winograd_s"],
                    [round(seconds, 3) for _, seconds in timed], strict=True))


def best_of_interleaved(runs: Sequence[Callable[[], list[Any]]], repeats: int) -> list[tuple[list[Any], float]]:
    """Per run: (outputs, seconds of its fastest of `repeats` timed passes over the set), after one
    warm-up pass each. The runs take turns, so a change in the load of a shared machine hits all of
    them alike, and the minimum is the pass least disturbed by it (as timeit does)."""
    outs = [run_set() for run_set in runs]
    best = [float("inf")] * len(runs)
    for _ in range(max(1, repeats)):
        for i, run_set in enumerate(runs):
            t0 = time.perf_counter()
            run_set()
            best[i] = min(best[i], time.perf_counter() - t0)
    return list(zip(outs, best, strict=True))


def run(args: argparse.Namespace) -> int:
    import cv2

    # one thread each: per-image latency on an equal footing (and no oversubscription on a shared host)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    data = Path(args.anchors).resolve().parents[1] / "data"
    catalog = served_catalog()
    rows: list[dict[str, object]] = []
    for dataset, scale in CASES:
        pairs = eval_pairs(data, dataset, scale)
        for family, cv_name, stem in [p for p in PAIRS if p[0] in args.families.split(",")]:
            model_file = Path(args.anchors) / f"{stem}_x{scale}.pb"
            try:
                card = catalog.resolve(family, scale)
            except (LookupError, ValueError):
                continue
            if not model_file.exists():
                continue
            sr = cv2.dnn_superres.DnnSuperResImpl_create()
            try:
                sr.readModel(str(model_file))
            except cv2.error as exc:  # OpenCV >= 5.1 reads these as ONNX and refuses TensorFlow graphs
                raise SystemExit(f"OpenCV {cv2.__version__} cannot read {model_file.name} "
                                 f"(pip install -e .[anchors] installs the 5.0 it needs): {exc}") from exc
            sr.setModel(cv_name, scale)
            desc = load_descriptor(card, scale, catalog=catalog)
            lrs = [lr for lr, _ in pairs]
            # as a CPU worker serves it: bf16 only on a CPU with native bf16, where allowed and faster
            dtype = cpu_serving_dtype(desc, *lrs[0].shape[:2]) if args.half_precision == "auto" else None
            (cv_outs, cv_s), (ours, our_s) = best_of_interleaved(
                [partial(_opencv_pass, sr, lrs), partial(our_pass, desc, lrs, dtype)], args.repeats)
            cv_psnr, cv_ssim = _score(cv_outs, pairs, scale)
            our_psnr, our_ssim = _score(ours, pairs, scale)
            row = {
                "dataset": dataset,
                "scale": scale,
                "model": card.name,
                "ours_dtype": "bf16" if dtype == torch.bfloat16 else "fp32",
                "opencv": f"{stem}_x{scale}",
                "ours_psnr": round(our_psnr, 2),
                "ours_ssim": round(our_ssim, 4),
                "ours_s": round(our_s, 3),
                "opencv_psnr": round(cv_psnr, 2),
                "opencv_ssim": round(cv_ssim, 4),
                "opencv_s": round(cv_s, 3),
                # LapSRN's graphs end in several outputs: whole pipelines only
                **(net_only_seconds(desc, model_file, lrs, args.repeats, dtype) if family != "lapsrn" else {}),
            }
            log.info("%s", row)
            rows.append(row)
    load = os.getloadavg()[0]
    machine = f"{host_description()}, load {load:.1f}; OpenCV {cv2.__version__}, torch {torch.__version__}"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# Ours vs OpenCV dnn_superres ({args.tag})",
        "",
        f"Machine: {machine}  ",
        f"Date: {stamp}",
        "",
        f"Same images, same metric code (Y, shaved, 8-bit). Time = whole set, one image at a time, one CPU thread "
        f"each; the best of {args.repeats} passes after a warm-up one, the two taking turns. Ours in the precision a "
        f"CPU worker serves the model in here (bf16 only on a CPU with native bf16, where the card's CPU "
        f"measurement allows it and it times faster; OpenCV runs fp32).",
        "",
        "| set | scale | ours | PSNR / SSIM | seconds | OpenCV | PSNR / SSIM | seconds | speed ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    net_rows = [r for r in rows if "ours_net_s" in r]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | x{r['scale']} | {r['model']} ({r['ours_dtype']}) | "
            f"{r['ours_psnr']} / {r['ours_ssim']} | "
            f"{r['ours_s']} | {r['opencv']} | {r['opencv_psnr']} / {r['opencv_ssim']} | {r['opencv_s']} | "
            f"{float(r['opencv_s']) / max(float(r['ours_s']), 1e-9):.2f}x |"
        )
    if net_rows:
        lines += [
            "",
            "The networks alone, on the Y channel (seconds per set, same protocol; OpenCV's also with its "
            "Winograd 3x3 convolutions off, `Net.enableWinograd(False)`): the rest of each row above is colour "
            "conversion, chroma resize and 8-bit rounding.",
            "",
            "| set | scale | ours | net seconds | OpenCV | net seconds | without Winograd |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['dataset']} | x{r['scale']} | {r['model']} ({r['ours_dtype']}) | {r['ours_net_s']} | "
            f"{r['opencv']} | "
            f"{r['opencv_net_s']} | {r['opencv_net_no_winograd_s']} |"
            for r in net_rows
        ]
    write_results(Path(args.out), args.tag, {"machine": machine, "date": stamp, "rows": rows}, lines)
    return 0
