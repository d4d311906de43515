"""`srserve train ARCH --scale S`: train a registered single-image architecture (model_store.train)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def _arch_arg(text: str) -> tuple[str, int | float | str | bool]:
    key, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--arch-arg takes KEY=VALUE, not {text!r}")
    value: int | float | str | bool
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
    return key, value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a super-resolution network and write weights + model card",
        description="Defaults for --iters/--batch/--patch/--lr/--loss come from the "
        "architecture's recipe in model_store.train.RECIPES.",
    )
    p.add_argument("arch", help="registered architecture id, e.g. fsrcnn")
    p.add_argument("--scale", type=int, required=True, help="upscaling factor (ignored by multi-scale VDSR)")
    p.add_argument("--iters", type=int, help="training iterations (the cosine schedule's length)")
    p.add_argument("--batch", type=int, help="patches per batch")
    p.add_argument("--patch", type=int, help="HR patch side in pixels")
    p.add_argument("--lr", type=float, help="peak Adam learning rate")
    p.add_argument("--loss", choices=["l1", "charbonnier", "mse"])
    p.add_argument("--warmup", type=int, help="linear warm-up iterations (default min(500, iters/10))")
    p.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value")
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        help="folder of training images (repeatable; default ../shared/data/train/{T91,SunHays80})",
    )
    p.add_argument(
        "--scale-augment",
        type=float,
        nargs="+",
        default=[],
        metavar="FACTOR",
        help="add a copy of every training image shrunk by each factor in (0, 1), e.g. 0.9 0.8 0.7 0.6 "
        "(antialiased bicubic; the scaled training sets of FSRCNN, VDSR and LapSRN)",
    )
    p.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default runs/)")
    p.add_argument("--name", default="", help="model name (default <arch>_x<scale>)")
    p.add_argument(
        "--arch-arg",
        type=_arch_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture constructor argument (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue from <out>/<name>.ckpt.safetensors")
    p.add_argument(
        "--init",
        type=Path,
        help="start a new schedule from these trained weights (e.g. model_store/weights/fsrcnn_x2.safetensors; "
        "its card beside it must match the architecture and scale; without --arch-arg the card's arguments are used)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=2000, help="Set5 evaluation + checkpoint every N steps")
    p.add_argument("--log-every", type=int, default=200, help="progress-bar loss update every N steps")
    p.add_argument(
        "--time-budget",
        type=float,
        help="stop training after this many seconds (outputs are "
        "still written; the cosine schedule is stretched to end at the budget)",
    )
    p.add_argument(
        "--amp",
        choices=["auto", "bf16", "fp16", "none"],
        default="auto",
        help="autocast dtype (auto: bf16 on CUDA and on CPUs with native bf16, else none)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward pass")
    p.add_argument(
        "--freeze-batchnorm",
        action="store_true",
        help="keep BatchNorm layers in inference mode (running statistics fixed, affine parameters still "
        "trained): fine-tunes the function that is served; for SRResNet after its BN training",
    )
    p.add_argument("--eval-sets", nargs="+", default=None, help="final evaluation sets (default Set5 Set14 BSD100)")
    p.add_argument(
        "--hardware-note",
        default="",
        help="added to the card's hardware: what the trainer cannot see, e.g. 'beside another training'",
    )
    p.set_defaults(handler=_handle)


def _command_line(args: argparse.Namespace) -> str:
    """The `srserve train ...` invocation as typed (for the card), whatever script dispatched it."""
    argv = sys.argv[1:]
    if "train" in argv:
        return shlex.join(["srserve", *argv[argv.index("train") :]])
    return shlex.join(["srserve", "train", args.arch, "--scale", str(args.scale)])


def _handle(args: argparse.Namespace) -> int:
    from model_store.data import BENCHMARK_SETS, default_train_dirs
    from model_store.train import TrainConfig, recipe_for, train

    recipe = recipe_for(args.arch)
    cfg = TrainConfig(
        arch=args.arch,
        scale=args.scale,
        iters=args.iters or recipe.iters,
        batch=args.batch or recipe.batch,
        patch=args.patch or recipe.patch,
        lr=args.lr or recipe.lr,
        loss=args.loss or recipe.loss,
        warmup=args.warmup,
        grad_clip=args.grad_clip,
        data=args.data or default_train_dirs(),
        scale_augment=args.scale_augment,
        out=args.out,
        name=args.name,
        arch_args=dict(args.arch_arg),
        resume=args.resume,
        init=args.init,
        device=args.device,
        seed=args.seed,
        eval_every=args.eval_every,
        log_every=args.log_every,
        time_budget=args.time_budget,
        amp=args.amp,
        compile=args.compile,
        freeze_batchnorm=args.freeze_batchnorm,
        eval_sets=args.eval_sets or list(BENCHMARK_SETS),
        command=_command_line(args),
        hardware_note=args.hardware_note,
    )
    card = train(cfg)
    for r in card.results:
        paper = f"{r.paper_psnr_y:.2f}" if r.paper_psnr_y is not None else "-"
        print(f"{card.name}\tx{r.scale}\t{r.dataset}\t{r.psnr_y:.2f} dB\t{r.ssim_y:.4f}\tpaper {paper}")
    return 0
