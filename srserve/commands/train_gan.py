"""`srserve train-gan`: fine-tune an SRResNet into SRGAN (`srgan_x4`), see `model_store.train_gan`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "train-gan",
        help="fine-tune a trained srresnet_x4 adversarially into srgan_x4",
        description="SRGAN fine-tuning: RaGAN + discriminator feature matching + small L1 terms. "
        "Resumes from <out-dir>/<name>.ckpt.pt; writes <name>.safetensors and its card.",
    )
    p.add_argument("--name", default="srgan_x4", help="output model name (default srgan_x4)")
    p.add_argument("--init", default="srresnet_x4", help="srresnet card name or .safetensors to start from")
    p.add_argument("--iterations", type=int, default=None, help="total iterations, resumed runs included")
    p.add_argument("--time-budget-s", type=float, default=None, help="stop (and write the model) after this")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--patch-size", type=int, default=None, help="HR patch side")
    p.add_argument("--lr-g", type=float, default=None)
    p.add_argument("--lr-d", type=float, default=None)
    p.add_argument("--adversarial-weight", type=float, default=None)
    p.add_argument("--feature-weight", type=float, default=None)
    p.add_argument("--pixel-weight", type=float, default=None)
    p.add_argument("--lr-consistency-weight", type=float, default=None)
    p.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                   help="bf16 (default): autocast on CUDA and on CPUs with native bf16; fp32: never")
    p.add_argument("--device", default=None, help="cuda, cpu or auto (default)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--data", type=Path, action="append", default=None, help="training image folder (repeat)")
    p.add_argument("--out-dir", type=Path, default=None, help="where weights, card and checkpoint go")
    p.add_argument("--weights-dir", type=Path, action="append", default=None, help="extra folder to find --init")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--eval-set", action="append", default=None, help="benchmark to measure at the end (repeat)")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from model_store.train_gan import GanConfig, train_srgan

    given = {
        "name": args.name,
        "init": args.init,
        "iterations": args.iterations,
        "time_budget_s": args.time_budget_s,
        "batch_size": args.batch_size,
        "patch_size": args.patch_size,
        "lr_g": args.lr_g,
        "lr_d": args.lr_d,
        "adversarial_weight": args.adversarial_weight,
        "feature_weight": args.feature_weight,
        "pixel_weight": args.pixel_weight,
        "lr_consistency_weight": args.lr_consistency_weight,
        "precision": args.precision,
        "device": args.device,
        "seed": args.seed,
        "train_dirs": args.data,
        "out_dir": args.out_dir,
        "weights_dirs": args.weights_dir,
        "eval_sets": args.eval_set,
        "resume": not args.no_resume,
    }
    cfg = GanConfig(**{k: v for k, v in given.items() if v is not None})
    card = train_srgan(cfg)
    for r in card.results:
        print(f"{r.dataset} x{r.scale}: {r.psnr_y:.2f} dB / {r.ssim_y:.4f}  LR-consistency {r.lr_consistency_psnr} dB")
    return 0
