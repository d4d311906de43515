"""`srserve eval --model NAME --scale S --dataset DIR`: PSNR/SSIM (Y, shaved, 8-bit) on LR/HR pairs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="measure a model on a folder of *_HR.png / *_LR.png pairs")
    p.add_argument("--model", required=True, help="model name or family, e.g. fsrcnn_x4, vdsr, bicubic")
    p.add_argument("--scale", type=int, required=True)
    p.add_argument(
        "--dataset",
        required=True,
        help="folder of *_HR.png/*_LR.png pairs, or Set5 | Set14 | BSD100 (x8 pairs are made from x4 HR)",
    )
    p.add_argument(
        "--weights", type=Path, action="append", default=[], help="extra folder of model cards + weights (repeatable)"
    )
    p.add_argument("--self-ensemble", action="store_true", help="x8 geometric self-ensemble")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--burst",
        type=int,
        metavar="K",
        help="burst model: evaluate on K-frame bursts synthesised from the set's HR images (fixed seed, "
        "noise 2/255), beside bicubic and the best single-image model on the reference frame",
    )
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    if args.burst:
        from model_store.burst.evaluate_burst import burst_tables

        text, _ = burst_tables(
            ["bicubic", "single", args.model], [args.dataset], scale=args.scale, frames=args.burst, k_table=[],
            weights_dirs=args.weights, device=args.device,
        )
        print(text)
        return 0
    from model_store.data import resolve_eval_pairs
    from model_store.evaluate import evaluate_pairs, load_for_eval

    dataset, pairs = resolve_eval_pairs(args.dataset, args.scale)
    desc = load_for_eval(args.model, args.scale, args.device, args.weights)
    report = evaluate_pairs(desc, pairs, dataset=dataset, self_ensemble=args.self_ensemble)
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    for s in report.per_image:
        print(f"{s.image}\t{s.psnr_y:.2f} dB\t{s.ssim_y:.4f}")
    ensemble = " (self-ensemble x8)" if args.self_ensemble else ""
    print(
        f"{report.model} x{report.scale} {dataset}{ensemble}: {report.n_images} images, "
        f"PSNR {report.psnr_y:.2f} dB, SSIM {report.ssim_y:.4f}"
    )
    return 0
