"""`srserve compare --models A,B --dataset Set14 --image NAME --scale S --out FIG.png`: side-by-side crops."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="figure: crops of several models' outputs beside the ground truth")
    p.add_argument("--models", required=True, help="comma-separated model names or families, e.g. bicubic,fsrcnn_x4")
    p.add_argument("--dataset", default="Set14", help="Set5 | Set14 | BSD100 or a folder of *_HR/*_LR pairs")
    p.add_argument("--image", required=True, help="pair name in the set, e.g. img_001")
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--crop", type=int, default=96, help="crop side in HR pixels (default 96)")
    p.add_argument("--at", metavar="X,Y", help="crop's top-left corner in HR pixels (default: the most textured)")
    p.add_argument("--zoom", type=int, help="nearest-neighbour zoom of the crops (default 256 // crop)")
    p.add_argument("--out", type=Path, required=True, help="figure .png; the table goes beside it as .md")
    p.add_argument("--weights", type=Path, action="append", default=[], help="extra folder of cards + weights")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from model_store.compare import write_comparison

    at = None
    if args.at:
        x, y = (int(v) for v in args.at.split(","))
        at = (x, y)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    _, table = write_comparison(models, dataset=args.dataset, image=args.image, scale=args.scale, out=args.out,
                                crop_size=args.crop, crop_at=at, zoom=args.zoom, device=args.device,
                                weights_dirs=args.weights or None)
    print(table.read_text(), end="")
    return 0
