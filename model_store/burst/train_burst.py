"""Train a burst architecture (shift_pool, misr_gru) and write its weights and model card.

    python -m model_store.burst.train_burst --arch shift_pool --scale 4 --frames 8 \
        --supervision supervised --time-budget 360 --out runs/

Bursts are synthesised on the training device every step: HR crops from ../shared/data/train
(model_store.data.PatchSampler keeps every image on the device), random sub-pixel shifts, the eval
degradation (antialiased MATLAB bicubic), read + shot noise, exposure gains, an occasional outlier
frame, 8-bit rounding (model_store.burst.synth). Crops carry a margin so no frame shows reflected
borders. bf16 autocast on CUDA, fused Adam, cosine schedule over the time budget (or --iters).

Supervision:
- `supervised`: L1 against the HR crop. Shifts given to shift_pool are the true ones plus a small
  jitter (the registration's typical error), which matches inference without registering every batch.
- `self` (Nguyen et al. 2022): no HR is used. One frame (not the reference) is held out; the network
  fuses the others with *registered* shifts (estimated from the frames, like a user's own bursts);
  the prediction is warped by the held-out frame's registered shift, downsampled with the known
  degradation, and compared (L1) with the held-out frame, away from the borders.

Resumable: `<out>/<name>.ckpt.safetensors` (tensors only; step counters in metadata), written at
every evaluation; `--resume` continues the schedule where it stopped. `--init WEIGHTS` starts a new
schedule from trained weights of the same architecture (e.g. the shipped ones, when the checkpoint
is gone); the card then counts their steps and wall time too. The final weights are the best
checkpoint on Set5 bursts (K = frames).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from model_store.burst.descriptor import BurstDescriptor
from model_store.burst.evaluate_burst import EVAL_FRAMES, PROTOCOL, eval_bursts, run_model
from model_store.burst.fusion import normalize_exposure
from model_store.burst.registration import register_burst
from model_store.burst.synth import BurstConfig, degrade_shifted, synth_burst
from model_store.card import EvalResult, ModelCard, TrainingRecipe
from model_store.data import PatchSampler, data_root, default_train_dirs
from model_store.registry import arch_spec, count_params, sha256_file
from model_store.train import TrainingRun, full_arch_args, hardware_string, lr_factor

log = logging.getLogger(__name__)

SHIFT_JITTER = 0.05  # LR px: std of the noise added to true shifts (registration error is ~0.03-0.05)
TRAIN_NOISE = (1.0 / 255.0, 4.0 / 255.0)  # read-noise sigma drawn per batch: brackets the eval's 2/255
TRAIN_SHOT = 0.0005  # shot-noise factor (variance += factor * signal)
TRAIN_GAIN = 0.1  # exposure gains in [0.9, 1.1]
TRAIN_OUTLIER = 0.1  # probability of one outlier frame per burst
SELF_MARGIN = 4  # LR px ignored at the border of the held-out frame in the self-supervised loss


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train_burst", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, choices=["shift_pool", "misr_gru"])
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--frames", type=int, default=8, help="K frames per training burst")
    p.add_argument("--supervision", choices=["supervised", "self"], default="supervised")
    p.add_argument("--time-budget", type=float, default=None, help="seconds of training")
    p.add_argument("--iters", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48, help="LR patch side")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default=None, help="model name (default <arch>[_self]_x<scale>)")
    p.add_argument("--data", type=Path, action="append", default=[], help="training image folders")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=float, default=60.0, help="seconds between Set5-burst evaluations")
    p.add_argument("--eval-sets", default="Set5,Set14,BSD100", help="final card results ('' = none)")
    p.add_argument("--eval-limit", type=int, default=None, help="images per eval set (smoke runs)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init", type=Path, default=None,
                   help="start from these .safetensors weights (their .json card beside them, same arch_args)")
    p.add_argument("--arch-args", default="{}", help='JSON, e.g. {"enc_features": 24}')
    p.add_argument("--hardware-note", default="", help="added to the card's hardware: what the trainer cannot "
                   "see, e.g. 'beside another training'")
    return p


def burst_flops_per_output_pixel(module: nn.Module, frames: int, scale: int, size: int = 24) -> int:
    """2 x conv MACs per output pixel for a burst of `frames` frames (splatting not counted)."""
    macs = 0

    def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Conv2d)
        macs += output.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        dev = next(module.parameters()).device
        x = torch.rand(1, frames, 3, size, size, device=dev)
        shifts = torch.rand(1, frames, 2, device=dev) - 0.5
        with torch.no_grad():
            out = module(x, shifts, None)
    finally:
        for h in handles:
            h.remove()
    return round(2 * macs / (out.shape[-2] * out.shape[-1]))


class BurstTrainer(TrainingRun):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        spec = arch_spec(args.arch)
        if spec.kind != "burst" or not spec.trainable:
            raise ValueError(f"{args.arch!r} is not a trainable burst architecture")
        if args.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(args.device)
        torch.manual_seed(args.seed)
        # every constructor argument recorded, defaults filled in: the card describes the whole model
        self.arch_args = full_arch_args(spec.factory, json.loads(args.arch_args))
        self.module = spec.factory(scale=args.scale, **self.arch_args).to(self.device)
        self.uses_shifts = bool(getattr(self.module, "uses_shifts", True))
        self.name = args.name or f"{args.arch}{'_self' if args.supervision == 'self' else ''}_x{args.scale}"
        self.out: Path = args.out
        self.data = args.data or default_train_dirs()
        self.sampler = PatchSampler(self.data, self.device, args.seed)
        self.gen = torch.Generator().manual_seed(args.seed + 1)  # burst parameters (CPU, cheap)
        self.margin = math.ceil(2.0) + 4  # LR px of real context around the crop: shifts + kernel
        fused = self.device.type == "cuda"
        self.opt = torch.optim.Adam(self.module.parameters(), lr=args.lr, fused=fused)
        self.amp = self.device.type == "cuda"
        self._start_run(args.init, args.arch, self.arch_args, args.scale)

    @property
    def ckpt_path(self) -> Path:
        return self.out / f"{self.name}.ckpt.safetensors"

    # ---- data --------------------------------------------------------------------------------
    def _burst(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(frames (B,K,3,P,P) exposure-normalised, true shifts, HR (B,3,Ps,Ps), outlier mask)."""
        a, s, m = self.args, self.args.scale, self.margin
        side = (a.patch + 2 * m) * s
        hr = self.sampler.sample(a.batch, side).float().div_(255.0)
        sigma = float(torch.empty(1).uniform_(*TRAIN_NOISE, generator=self.gen))
        cfg = BurstConfig(frames=a.frames, scale=s, max_shift=2.0, noise_sigma=sigma, shot_noise=TRAIN_SHOT,
                          gain_range=TRAIN_GAIN, outlier_prob=TRAIN_OUTLIER, matrix_warp=True)
        b = synth_burst(hr, cfg, generator=self.gen)
        frames = b.frames[..., m : m + a.patch, m : m + a.patch]
        target = b.hr[..., m * s : (m + a.patch) * s, m * s : (m + a.patch) * s]
        return frames, b.shifts.to(self.device), target, b.outlier

    def _loss(self, batch: tuple[torch.Tensor, ...] | None = None, held_out: int | None = None) -> torch.Tensor:
        """One step's loss on a fresh synthetic batch (or `batch`, a `_burst()` result; `held_out`
        fixes the self-supervised target frame: both for tests)."""
        a = self.args
        frames, true_shifts, hr, _ = batch if batch is not None else self._burst()
        if a.supervision == "supervised":
            shifts = true_shifts + SHIFT_JITTER * torch.randn(true_shifts.shape, generator=self.gen).to(self.device)
            shifts[:, 0] = 0.0
            frames, _ = normalize_exposure(frames, shifts)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                pred = self.module(frames, shifts, None)
            return (pred.float() - hr).abs().mean()
        # self-supervised: only the frames are used (registered shifts; HR never seen)
        shifts = register_burst(frames, reject=False).shifts
        frames, _ = normalize_exposure(frames, shifts)
        k = frames.shape[1]
        j = held_out if held_out is not None else int(torch.randint(1, k, (1,), generator=self.gen))
        keep = [i for i in range(k) if i != j]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            pred = self.module(frames[:, keep], shifts[:, keep], None)
        back = degrade_shifted(pred.float(), shifts[:, j], a.scale)
        c = SELF_MARGIN
        return (back - frames[:, j])[..., c:-c, c:-c].abs().mean()

    # ---- evaluation --------------------------------------------------------------------------
    def card(self, results: list[EvalResult], sha: str | None, training: TrainingRecipe | None) -> ModelCard:
        self.module.eval()
        flops = burst_flops_per_output_pixel(self.module, self.args.frames, self.args.scale)
        return ModelCard(
            name=self.name, family=self.args.arch, architecture=self.args.arch, arch_args=self.arch_args,
            scales=[self.args.scale], kind="burst", channels="rgb", params=count_params(self.module),
            flops_per_output_pixel=flops, weights_file=f"{self.name}.safetensors", weights_sha256=sha,
            receptive_field=int(getattr(self.module, "receptive_field", 8)), min_frames=2, max_frames=16,
            training=training, results=results, source="shipped",
            paper={"shift_pool": "Nguyen et al., Self-supervised super-resolution for multi-exposure push-frame "
                                 "satellites (HDR-DSP), CVPR 2022",
                   "misr_gru": "Rifat Arefin et al., Multi-Image Super-Resolution for Remote Sensing using Deep "
                               "Recurrent Networks, CVPR-W 2020"}[self.args.arch],
            notes=f"RGB in/out; flops for K={self.args.frames}; "
            + ("self-supervised (no HR seen); " if self.args.supervision == "self" else "")
            + "results on synthetic bursts: " + PROTOCOL,
        )

    def descriptor(self) -> BurstDescriptor:
        stub = self.card([], None, None)
        return BurstDescriptor(card=stub, scale=self.args.scale, module=self.module, device=self.device,
                               receptive_field=stub.receptive_field)

    def evaluate(self, dataset: str, limit: int | None = None) -> tuple[float, float]:
        self.module.eval()
        bursts = eval_bursts(dataset, self.args.scale, EVAL_FRAMES, limit=limit)  # the tables' bursts
        score = run_model(self.descriptor(), bursts, self.args.frames, dataset=dataset)
        self.module.train()
        return score.psnr_y, score.ssim_y

    # ---- checkpoints ---------------------------------------------------------------------------
    @property
    def _generators(self) -> dict[str, torch.Generator]:
        return {"data": self.sampler.generator, "burst": self.gen}

    def _eval_and_checkpoint(self, elapsed: float) -> None:
        psnr, _ = self.evaluate("Set5", self.args.eval_limit)
        self._maybe_best(psnr)
        log.info("%s step %d: Set5 bursts %.3f dB (best %.3f), %.0f s", self.name, self.step, psnr,
                 self.best_psnr, elapsed)
        self.save_checkpoint(elapsed)

    # ---- loop --------------------------------------------------------------------------------
    def fit(self) -> None:
        a = self.args
        self.out.mkdir(parents=True, exist_ok=True)
        self._begin_fit(a.resume)
        self.module.train()
        start = time.monotonic()
        last_eval = time.monotonic()
        loss_sum, n_loss = torch.zeros((), device=self.device), 0
        warmup = 200
        while self.step < a.iters:
            elapsed = self.elapsed_before + time.monotonic() - start
            if a.time_budget is not None and elapsed >= a.time_budget:
                break
            progress = self.step / a.iters
            if a.time_budget:
                progress = max(progress, elapsed / a.time_budget)
            factor = lr_factor(self.step, progress, warmup)
            for g in self.opt.param_groups:
                g["lr"] = a.lr * factor
            loss = self._loss()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), 1.0)
            self.opt.step()
            loss_sum += loss.detach()
            n_loss += 1
            self.step += 1
            if self.step % 100 == 0:
                mean = float(loss_sum) / n_loss
                if not math.isfinite(mean):
                    raise FloatingPointError(f"loss became {mean} at step {self.step}; lower --lr")
                log.info("%s step %d loss %.5f lr %.2e", self.name, self.step, mean, a.lr * factor)
                loss_sum.zero_()
                n_loss = 0
            if time.monotonic() - last_eval >= a.eval_every:
                self._eval_and_checkpoint(self.elapsed_before + time.monotonic() - start)
                last_eval = time.monotonic()
        self.train_seconds = self.elapsed_before + time.monotonic() - start
        self._eval_and_checkpoint(self.train_seconds)

    def finish(self, command: str) -> ModelCard:
        from safetensors.torch import save_file

        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)
        if self.device.type == "cuda":  # card numbers reproducible on CPU: plain fp32
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        # weights first: a missing eval set must not cost the training run
        weights = self.out / f"{self.name}.safetensors"
        tmp = weights.with_suffix(".tmp")
        save_file({k: v.detach().float().cpu().contiguous() for k, v in self.module.state_dict().items()}, str(tmp))
        os.replace(tmp, weights)
        results = []
        for ds in [d for d in self.args.eval_sets.split(",") if d]:
            try:
                psnr, ssim = self.evaluate(ds, self.args.eval_limit)
            except FileNotFoundError as exc:
                log.warning("skipping %s: %s", ds, exc)
                continue
            results.append(EvalResult(dataset=ds, scale=self.args.scale, psnr_y=round(psnr, 4), ssim_y=round(ssim, 5),
                                      protocol=f"K={self.args.frames} " + PROTOCOL))
            log.info("%s %s bursts K=%d: %.3f dB / %.4f", self.name, ds, self.args.frames, psnr, ssim)
        card = self.card(results, sha256_file(weights), self._recipe(command))
        (self.out / f"{self.name}.json").write_text(card.model_dump_json(indent=2) + "\n")
        log.info("wrote %s and %s.json", weights, self.name)
        return card

    def _recipe(self, command: str) -> TrainingRecipe:
        a = self.args
        root = data_root()
        data = [str(p.resolve().relative_to(root)) if p.resolve().is_relative_to(root) else str(p) for p in self.data]
        loss = ("L1 vs HR" if a.supervision == "supervised" else
                "self-supervised L1: held-out frame vs the prediction warped by its registered shift and downsampled")
        iterations, hardware, notes, earlier = self.provenance(hardware_string(self.device, a.hardware_note),
                                                               "weights = best Set5-burst checkpoint",
                                                               metric="Set5 bursts")
        return TrainingRecipe(
            data=data, iterations=iterations, batch_size=a.batch, patch_size=a.patch * a.scale,
            loss=loss,
            optimizer="Adam (0.9, 0.999), grad clip 1.0", learning_rate=a.lr,
            schedule="cosine, 200 warm-up iterations" + (f", over {a.time_budget:.0f} s" if a.time_budget else ""),
            augmentation=(f"synthetic bursts of {a.frames}: shifts +-2 LR px, read noise {TRAIN_NOISE[0]*255:.0f}-"
                          f"{TRAIN_NOISE[1]*255:.0f}/255, shot {TRAIN_SHOT}, gains +-{TRAIN_GAIN}, "
                          f"outlier p={TRAIN_OUTLIER}; "
                          "flips/transposes"),
            seed=a.seed, precision="bf16 autocast" if self.amp else "fp32", hardware=hardware,
            wall_time_s=round(self.prior.seconds + self.train_seconds, 1), command=command,
            notes=notes + (f"; true shifts + N(0, {SHIFT_JITTER}) jitter" if a.supervision == "supervised" else ""),
            earlier_runs=earlier,
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    trainer = BurstTrainer(args)
    trainer.fit()
    given = argv if argv is not None else sys.argv[1:]
    card = trainer.finish("python -m model_store.burst.train_burst " + " ".join(given))
    sys.stdout.write(f"{card.name}: " + ", ".join(f"{r.dataset} {r.psnr_y:.2f} dB" for r in card.results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
