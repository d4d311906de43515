"""`srserve bench ...`: the benchmarks of bench/, results written under bench/results/."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="run benchmarks (results in bench/results/)")
    bsub = p.add_subparsers(dest="bench_command", required=True, metavar="BENCH")

    m = bsub.add_parser("models", help="naive vs pure vs engine per model and input size, one device")
    m.add_argument("--models", default="bicubic", help="comma-separated model names (x4)")
    m.add_argument("--sizes", default="128,256,512,1920x1080", help="comma-separated: N or WxH")
    m.add_argument("--device", default="auto")
    m.add_argument("--seconds", type=float, default=2.0, help="timing window per case")
    m.add_argument("--scale", type=int, default=4)
    m.add_argument("--out", type=Path, default=Path("bench/results"))
    m.add_argument("--tag", default="models")
    m.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="also write a torch.profiler table of one extra engine pass per case to DIR")
    m.set_defaults(handler=_models)

    e = bsub.add_parser("e2e", help="end to end through the API + Redis + worker, batching on vs off")
    e.add_argument("--clients", default="1,8,64")
    e.add_argument("--model", default="bicubic")
    e.add_argument("--size", type=int, default=64)
    e.add_argument("--jobs", type=int, default=200, help="jobs per case")
    e.add_argument("--scale", type=int, default=2)
    e.add_argument("--device", default="cpu", help="the worker's device: cpu, cuda")
    e.add_argument("--out", type=Path, default=Path("bench/results"))
    e.add_argument("--tag", default="e2e")
    e.set_defaults(handler=_e2e)

    a = bsub.add_parser("anchors", help="our FSRCNN/ESPCN vs OpenCV dnn_superres on the same images")
    a.add_argument("--anchors", type=Path, default=Path("../shared/anchors/opencv_dnn_superres"))
    a.add_argument("--out", type=Path, default=Path("bench/results"))
    a.add_argument("--tag", default="anchors")
    a.add_argument("--families", default="fsrcnn,espcn,lapsrn", help="comma-separated: fsrcnn, espcn, lapsrn")
    a.add_argument("--repeats", type=int, default=3, help="timed passes per set, alternating; the best counts")
    a.add_argument("--half-precision", choices=["auto", "off"], default="auto",
                   help="auto: ours in the precision a CPU worker serves the model in here (bf16 where allowed "
                   "and faster); off: fp32, as SRSERVE_HALF_PRECISION=off")
    a.set_defaults(handler=_anchors)


def _models(args: argparse.Namespace) -> int:
    from bench.engine_bench import run

    run(args.models.split(","), args.sizes.split(","), args.device, args.seconds, args.out, args.tag, args.scale,
        profile_dir=args.profile)
    return 0


def _e2e(args: argparse.Namespace) -> int:
    from bench.e2e_bench import run

    return run(args)


def _anchors(args: argparse.Namespace) -> int:
    from bench.anchor_bench import run

    return run(args)
