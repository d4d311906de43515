"""Training step time on this CPU, side by side in one run: fp32 in NCHW (the trainer's CPU path before it
went channels_last), fp32 in NHWC (its path on CPUs without native bf16) and, where oneDNN runs bf16
natively (AVX512-BF16, AMX), bf16 autocast in NHWC (its default there). Each layout/precision times
`Trainer.train_step` (sampling, forward, loss, backward, Adam) on the same batch shape, as the best of
`--rounds` rounds of `--steps` steps taken in turns after a warm-up round (`best_of_interleaved`).

    python -m bench.train_step_bench --threads 2 --out bench/results --tag cpu-train-steps
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from bench import host_description, write_results
from bench.anchor_bench import best_of_interleaved
from model_store.data import data_root
from model_store.precision import cpu_trains_faster_in_bf16
from model_store.train import TrainConfig, Trainer

log = logging.getLogger(__name__)

# arch, scale, batch, HR patch: the shapes of the zoo's CPU training commands (model_store/RESULTS.md)
CASES = [("vdsr", 2, 16, 48), ("srresnet", 4, 8, 96), ("edsr", 4, 8, 96), ("lapsrn", 4, 8, 64),
         ("srcnn", 3, 16, 48), ("fsrcnn", 4, 16, 96), ("espcn", 3, 16, 96)]


def _trainer(arch: str, scale: int, batch: int, patch: int, amp: str, nhwc: bool, out: Path) -> Trainer:
    cfg = TrainConfig(arch=arch, scale=scale, iters=1000, batch=batch, patch=patch, lr=1e-4, loss="l1",
                      data=[data_root() / "train"], out=out, amp=amp, device="cpu", eval_sets=["Set5"])
    trainer = Trainer(cfg)
    if not nhwc:  # the previous CPU path: NCHW weights and inputs
        trainer.module.to(memory_format=torch.contiguous_format)
        nhwc_batch = trainer._batch

        def nchw_batch() -> tuple[int, torch.Tensor, list[torch.Tensor]]:
            drawn_scale, lr, targets = nhwc_batch()
            return drawn_scale, lr.contiguous(), targets

        trainer._batch = nchw_batch  # type: ignore[method-assign]
    return trainer


def _train_steps(trainer: Trainer, steps: int) -> list[None]:
    for _ in range(steps):
        trainer.train_step()
    return []  # best_of_interleaved keeps each run's outputs: training steps have none worth keeping


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    native = cpu_trains_faster_in_bf16()
    variants = [("fp32 NCHW", "none", False), ("fp32 NHWC", "none", True)]
    if native:
        variants.append(("bf16 NHWC", "bf16", True))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, scale, batch, patch in CASES:
            trainers = [_trainer(arch, scale, batch, patch, amp, nhwc, Path(tmp)) for _, amp, nhwc in variants]
            # the warm-up round also lets oneDNN build its primitives per shape and dtype
            timed = best_of_interleaved([partial(_train_steps, t, args.steps) for t in trainers], args.rounds)
            best = [seconds / args.steps for _, seconds in timed]
            row = {"arch": arch, "scale": scale, "batch": batch, "patch": trainers[0].patch,
                   **{name: round(s, 4) for (name, _, _), s in zip(variants, best, strict=True)}}
            row["speedup"] = round(best[0] / min(best), 2)
            rows.append(row)
            log.info("%s", row)
    machine = host_description()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    names = [name for name, _, _ in variants]
    lines = [f"# Training step time on CPU ({args.tag})", "", f"Machine: {machine}  ", f"Date: {stamp}  ",
             f"Threads: {args.threads}; native bf16: {'yes' if native else 'no (bf16 not timed: emulated)'}", "",
             "Seconds per `Trainer.train_step` (best of "
             f"{args.rounds} rounds of {args.steps} steps, variants in turns); speed-up = fp32 NCHW / fastest.", "",
             "| model | scale | batch × patch | " + " | ".join(names) + " | speed-up |",
             "|---|---|---|" + "---|" * len(names) + "---|"]
    lines += [f"| {r['arch']} | x{r['scale']} | {r['batch']} × {r['patch']}² | "
              + " | ".join(f"{r[n]:.3f}" for n in names) + f" | {r['speedup']}× |" for r in rows]
    write_results(Path(args.out), args.tag,
                  {"machine": machine, "date": stamp, "threads": args.threads, "native_bf16": native, "rows": rows},
                  lines)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="train_step_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--tag", default="cpu-train-steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
