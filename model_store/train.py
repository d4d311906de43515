"""Train any registered single-image architecture and write its weights and model card.

    srserve train fsrcnn --scale 4 --iters 20000 --time-budget 600 --out runs/

The loop is built to keep a GPU busy with small networks (several trainings share one card):
patches are cut, augmented and degraded on the device (`model_store.data.PatchSampler`), nothing
is read back to the host except every `log_every` steps and at evaluations, Adam is fused, the
forward runs in channels_last layout under bf16 autocast (CUDA, and CPUs with bf16 in hardware:
AVX512-BF16, AMX). The learning rate follows a cosine with linear warm-up; with `--time-budget` the
schedule's progress is max(step / iters, elapsed / budget), so a run stopped by the clock still ends
with a decayed learning rate.

Architectures opt in to the special cases by attributes, so other zoos reuse this trainer as is:
- `multi_scale = True` and `supported_scales`: one network for all scales (VDSR); each batch draws
  its scale and calls `forward_with_scale`;
- `forward_pyramid(x) -> list[Tensor]`: progressive networks (LapSRN); the loss is summed over
  every level against the HR patch downscaled to that level;
- `receptive_field`, `size_multiple`: copied into the card.

Checkpoints (`<out>/<name>.ckpt.safetensors`) hold tensors only (model, best-so-far model, Adam
state, RNG states) with the step counters as metadata, so `--resume` never unpickles anything.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from model_store.card import EarlierRun, EvalResult, ModelCard, TrainingRecipe, shortfall_note
from model_store.data import BENCHMARK_SETS, PatchSampler, benchmark_pairs, data_root, make_lr
from model_store.evaluate import EvalReport, card_result, descriptor_for, evaluate_pairs
from model_store.fast_resize import imresize_torch_cached
from model_store.host import cpu_description, read_cpuinfo
from model_store.lineage import continued_from, lift_lineage, split_lineage
from model_store.paper_results import PAPERS
from model_store.precision import HALF_SAFE_DB, cpu_runs_bf16, cpu_trains_faster_in_bf16
from model_store.profiling import flops_per_output_pixel
from model_store.registry import arch_spec, count_params, rgb_to_ycbcr, sha256_file

log = logging.getLogger(__name__)

LossName = Literal["l1", "charbonnier", "mse"]
AmpName = Literal["auto", "bf16", "fp16", "none"]
CHARBONNIER_EPS = 1e-3  # LapSRN's value


@dataclass(frozen=True)
class Recipe:
    """Per-architecture defaults, sized for a few minutes on one modern GPU shared by several runs."""

    iters: int
    batch: int
    patch: int  # HR patch side; a multiple of every training scale
    lr: float
    loss: LossName


RECIPES: dict[str, Recipe] = {
    "srcnn": Recipe(iters=60_000, batch=64, patch=96, lr=1e-3, loss="l1"),
    "fsrcnn": Recipe(iters=80_000, batch=128, patch=96, lr=1e-3, loss="l1"),
    "espcn": Recipe(iters=80_000, batch=128, patch=96, lr=1e-3, loss="l1"),
    "vdsr": Recipe(iters=30_000, batch=32, patch=96, lr=2e-4, loss="l1"),
    "lapsrn": Recipe(iters=30_000, batch=32, patch=128, lr=2e-4, loss="charbonnier"),
}
FALLBACK_RECIPE = Recipe(iters=100_000, batch=16, patch=96, lr=2e-4, loss="l1")


def recipe_for(arch: str) -> Recipe:
    return RECIPES.get(arch, FALLBACK_RECIPE)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: str
    scale: int
    iters: int
    batch: int
    patch: int
    lr: float
    loss: LossName
    data: list[Path]
    scale_augment: list[float] = []  # downscale factors: each adds a shrunk copy of every training image
    out: Path
    name: str = ""  # default <arch>_x<scale>, or <arch> for a multi-scale network
    arch_args: dict[str, int | float | str | bool] = {}
    resume: bool = False
    init: Path | None = None  # start a new schedule from these trained weights (their card must match)
    device: str = "auto"
    seed: int = 0
    warmup: int | None = None  # default min(500, iters // 10)
    grad_clip: float | None = None
    eval_every: int = 2000
    log_every: int = 200
    time_budget: float | None = None  # seconds of training (not counting the final evaluation)
    amp: AmpName = "auto"
    compile: bool = False
    # BatchNorm layers keep their running statistics and act as the affine maps they are at inference:
    # the loss is then computed on exactly the function that is served (see Trainer._train_mode)
    freeze_batchnorm: bool = False
    eval_sets: list[str] = list(BENCHMARK_SETS)
    # the numpy downscale behind lr_consistency_psnr costs ~0.3 s per BSD100 image: small sets only
    lr_consistency_sets: list[str] = ["Set5", "Set14"]
    command: str = ""
    hardware_note: str = ""  # what the trainer cannot see, e.g. "beside another training"


def default_amp(device: torch.device) -> AmpName:
    """bf16 autocast on CUDA and on CPUs with bf16 in hardware (a VDSR step 5x faster than fp32 on an AMX
    Xeon, together with channels_last); fp32 on other CPUs, where oneDNN converts bf16 to fp32 and a step
    is ~4x slower (`cpu_trains_faster_in_bf16`)."""
    return "bf16" if device.type == "cuda" or cpu_trains_faster_in_bf16() else "none"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def hardware_string(device: torch.device, note: str = "") -> str:
    """The card's hardware: the device in its own words, with `note` (what the process cannot see, such as
    another training sharing the machine) among its details."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{name} ({note})" if note else name
    return cpu_description(read_cpuinfo(), torch.get_num_threads(), os.cpu_count(), note)


def run_summary(history: Sequence[tuple[int, float]], steps: int, seconds: float, metric: str = "Set5",
                day: str | None = None) -> str:
    """What one run did, for its card: "this run (2026-12-07): 10,297 steps in 110 min (0.64 s per step,
    evaluations included); Set5 31.38 -> 31.56 dB (lowest 30.91 dB, at step 500)". `history` holds the
    (step, PSNR) evaluations; a step-0 entry (the `--init` weights) gives the starting point, and the
    lowest point after it shows what a re-warmed learning rate cost."""
    day = day or datetime.now(UTC).date().isoformat()
    text = f"this run ({day}): {steps:,} steps in {seconds / 60:.0f} min"
    if steps:
        text += f" ({seconds / steps:.2f} s per step, evaluations included)"
    if not history:
        return text
    best = max(psnr for _, psnr in history)
    start = next((psnr for step, psnr in history if step == 0), None)
    if start is None:
        return f"{text}; {metric} best {best:.2f} dB"
    low_step, low = min(((s, p) for s, p in history if s > 0), key=lambda h: h[1], default=(0, start))
    text += f"; {metric} {start:.2f} -> {best:.2f} dB"
    return text + (f" (lowest {low:.2f} dB, at step {low_step:,})" if low < start else "")


def full_arch_args(factory: object, given: dict[str, int | float | str | bool]) -> dict[str, int | float | str | bool]:
    """Every constructor argument but `scale`, defaults filled in: the card records the whole model."""
    params = inspect.signature(factory).parameters  # type: ignore[arg-type]
    unknown = set(given) - set(params) - {"scale"}
    if unknown:
        raise ValueError(f"unknown architecture arguments {sorted(unknown)}; valid: {sorted(set(params) - {'scale'})}")
    args = {k: p.default for k, p in params.items() if k != "scale" and p.default is not inspect.Parameter.empty}
    args.update(given)
    return args


@dataclass(frozen=True)
class PriorTraining:
    """The training behind `--init` weights: its runs, oldest first (the last produced the weights),
    counted in the new card's iterations and wall time."""

    hardware: str = ""
    runs: tuple[EarlierRun, ...] = ()  # the new card's `earlier_runs`

    @property
    def steps(self) -> int:
        return self.runs[-1].iterations if self.runs else 0

    @property
    def seconds(self) -> float:
        return self.runs[-1].wall_time_s if self.runs else 0.0

    @property
    def note(self) -> str:
        return continued_from(self.runs[-1]) if self.runs else ""

    def to_json(self) -> str:
        return json.dumps({"hardware": self.hardware, "runs": [r.model_dump() for r in self.runs]})

    @classmethod
    def from_json(cls, text: str) -> PriorTraining:
        data = json.loads(text)
        if isinstance(data, list):  # older checkpoints: [steps, seconds, note(, hardware)], the runs nested in the note
            _, _, note, *hardware = data
            return cls(str(hardware[0]) if hardware else "", tuple(split_lineage(str(note))[1]))
        return cls(str(data["hardware"]), tuple(EarlierRun.model_validate(r) for r in data["runs"]))


def init_card(weights: Path) -> ModelCard:
    """The model card beside `--init` weights."""
    card_file = weights.with_suffix(".json")
    if not card_file.is_file():
        raise ValueError(f"--init {weights}: no model card {card_file.name} beside it")
    # a card from before `earlier_runs` carries its lineage nested in its notes: lift it, so that the
    # new card continues the list
    return lift_lineage(ModelCard.model_validate_json(card_file.read_text()))


def load_init_weights(weights: Path, arch: str, arch_args: dict[str, int | float | str | bool], scale: int
                      ) -> tuple[dict[str, torch.Tensor], PriorTraining]:
    """The state dict of shipped/trained weights to start a new schedule from, checked against their
    card (same architecture, arguments and scale; sha256 as recorded), and the training behind them."""
    from safetensors.torch import load_file

    card = init_card(weights)
    # a card written before an argument existed has its default: compare with defaults filled in
    card_args = full_arch_args(arch_spec(arch).factory, card.arch_args) if card.architecture == arch else card.arch_args
    if card.architecture != arch or card_args != arch_args or scale not in card.scales:
        raise ValueError(f"--init {weights}: card is {card.architecture} x{card.scales} {card.arch_args}, "
                         f"not {arch} x{scale} {arch_args}")
    if card.weights_sha256 is not None and sha256_file(weights) != card.weights_sha256:
        raise ValueError(f"--init {weights}: sha256 does not match its card")
    # the whole lineage, not just the last run: the runs behind the --init card, then its own
    t = card.training
    if t is None:  # a card without a recipe (a user's): its weights count as 0 steps
        prior = PriorTraining("", (EarlierRun(name=card.name, weights_sha256=card.weights_sha256, iterations=0,
                                              wall_time_s=0.0, command=""),))
    else:
        prior = PriorTraining(t.hardware, (*t.earlier_runs, EarlierRun(
            name=card.name, weights_sha256=card.weights_sha256, iterations=t.iterations,
            wall_time_s=t.wall_time_s, command=t.command, notes=t.notes)))
    log.info("initialised from %s (%d steps)", weights, prior.steps)
    return load_file(str(weights)), prior


def save_run_checkpoint(path: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                        generators: dict[str, torch.Generator], meta: dict[str, str],
                        best_state: dict[str, torch.Tensor] | None = None) -> None:
    """Tensors only (models, best-so-far model, optimiser states, RNG states), counters as metadata,
    written atomically: `--resume` never unpickles anything and a crash never leaves half a file.
    Keys: `<module>.<param>`, `<optimizer>.<param index>.<state>`, `best.<param>`, `rng.<generator>`."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        tensors.update({f"{name}.{k}": v for k, v in _cpu_state(module).items()})
    if best_state is not None:
        tensors.update({f"best.{k}": v.float().cpu().contiguous() for k, v in best_state.items()})
    for name, opt in optimizers.items():
        for i, state in opt.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"{name}.{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors.update({f"rng.{name}": gen.get_state() for name, gen in generators.items()})
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_run_checkpoint(path: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                        generators: dict[str, torch.Generator], device: torch.device
                        ) -> tuple[dict[str, torch.Tensor] | None, dict[str, str]]:
    """Restore what `save_run_checkpoint` wrote into the modules, optimizers and generators; returns
    the best-so-far state (None if none was saved) and the metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))

    def under(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

    for name, module in modules.items():
        module.load_state_dict(under(name))
    for name, opt in optimizers.items():
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in under(name).items():
            i, key = k.split(".", 1)
            opt_state.setdefault(int(i), {})[key] = v
        opt.load_state_dict({"state": opt_state, "param_groups": opt.state_dict()["param_groups"]})
    for name, gen in generators.items():
        gen.set_state(tensors[f"rng.{name}"])
    best = {k: v.to(device) for k, v in under("best").items()}
    return best or None, meta


@dataclass
class RunProgress:
    """The counters a resumed run continues from (checkpoint metadata)."""

    step: int = 0
    elapsed: float = 0.0  # training seconds so far
    best_psnr: float = -math.inf
    history: list[tuple[int, float]] = field(default_factory=list)
    prior: PriorTraining = field(default_factory=PriorTraining)
    best_step: int = 0  # the step of the best-so-far weights

    def to_meta(self) -> dict[str, str]:
        return {"step": str(self.step), "elapsed": repr(self.elapsed), "best_psnr": repr(self.best_psnr),
                "history": json.dumps(self.history), "prior": self.prior.to_json(), "best_step": str(self.best_step)}

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> RunProgress:
        history = [(int(s), float(p)) for s, p in json.loads(meta["history"])]
        # checkpoints from before `best_step`: the best of the (rounded) history
        best_step = (int(meta["best_step"]) if "best_step" in meta
                     else max(history, key=lambda h: h[1], default=(0, 0.0))[0])
        return cls(int(meta["step"]), float(meta["elapsed"]), float(meta["best_psnr"]), history,
                   PriorTraining.from_json(meta["prior"]) if "prior" in meta else PriorTraining(), best_step)


class TrainingRun:
    """The bookkeeping both trainers share: counters, the best weights so far and the training
    behind `--init`, kept across evaluations and `--resume`. Subclasses set `module`, `opt`,
    `name`, `ckpt_path`, `_generators` and `_eval_and_checkpoint`."""

    module: nn.Module
    opt: torch.optim.Optimizer
    name: str

    @property
    def ckpt_path(self) -> Path:
        raise NotImplementedError

    @property
    def _generators(self) -> dict[str, torch.Generator]:
        raise NotImplementedError

    def _start_run(self, init: Path | None, arch: str, arch_args: dict[str, int | float | str | bool],
                   scale: int) -> None:
        self.step = 0
        self.elapsed_before = 0.0  # training seconds of earlier (resumed) runs
        self.best_psnr = -math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step = 0  # the step the best-so-far weights are from
        self.history: list[tuple[int, float]] = []
        self.prior = PriorTraining()
        self.train_seconds = 0.0  # this run's, resumed parts included; set by fit()
        if init is not None:
            state, self.prior = load_init_weights(init, arch, arch_args, scale)
            device = next(self.module.parameters()).device
            self.module.load_state_dict({k: v.to(device) for k, v in state.items()})

    def _checkpoint_meta(self) -> dict[str, str]:
        """Extra metadata a subclass records in its checkpoints."""
        return {}

    def save_checkpoint(self, elapsed: float) -> None:
        progress = RunProgress(self.step, elapsed, self.best_psnr, self.history, self.prior, self.best_step)
        save_run_checkpoint(self.ckpt_path, {"model": self.module}, {"opt": self.opt}, self._generators,
                            {**progress.to_meta(), **self._checkpoint_meta()}, self.best_state)

    def load_checkpoint(self) -> None:
        device = next(self.module.parameters()).device
        self.best_state, meta = load_run_checkpoint(self.ckpt_path, {"model": self.module}, {"opt": self.opt},
                                                    self._generators, device)
        progress = RunProgress.from_meta(meta)
        self.step, self.elapsed_before, self.best_psnr = progress.step, progress.elapsed, progress.best_psnr
        self.history, self.prior, self.best_step = progress.history, progress.prior, progress.best_step
        log.info("resumed %s at step %d (best Set5 %.3f dB)", self.ckpt_path, self.step, self.best_psnr)

    def _eval_and_checkpoint(self, elapsed: float) -> None:
        raise NotImplementedError

    def _begin_fit(self, resume: bool) -> None:
        """Continue the checkpoint (`--resume`), or measure the `--init` weights before the first step: the
        history starts with them (step 0), so the card shows where the run started and the weights it ships
        are never worse on Set5 than those."""
        if resume and self.ckpt_path.is_file():
            self.load_checkpoint()
        if self.prior.runs and self.step == 0 and not self.history:
            self._eval_and_checkpoint(0.0)

    def provenance(self, hardware: str, weights_are: str, metric: str = "Set5"
                   ) -> tuple[int, str, str, list[EarlierRun]]:
        """For the card: the iterations behind the shipped weights (with those behind `--init`), the
        hardware of every run, notes that say which checkpoint was shipped, what this run did and what
        it continued from, and the earlier runs."""
        best = self.best_step if self.best_state is not None else self.step  # no evaluation: the last step
        earlier = self.prior.hardware
        chain = f"{earlier}, then {hardware}" if earlier and not earlier.endswith(hardware) else earlier or hardware
        notes = f"{weights_are} (step {best} of {self.step}); "
        notes += run_summary(self.history, self.step, self.train_seconds, metric)
        if self.prior.note:
            notes += f"; {self.prior.note}; iterations and wall time include it"
        return self.prior.steps + best, chain, notes, list(self.prior.runs)

    def _maybe_best(self, psnr: float) -> None:
        self.history.append((self.step, round(psnr, 4)))
        if psnr > self.best_psnr:
            self.best_psnr = psnr
            self.best_step = self.step
            self.best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}


def _loss_fn(name: LossName, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if name == "l1":
        return (pred - target).abs().mean()
    if name == "mse":
        return (pred - target).square().mean()
    return torch.sqrt((pred - target).square() + CHARBONNIER_EPS**2).mean()


def lr_factor(step: int, progress: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay over `progress` (0..1) of the run."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _to_channels(rgb: torch.Tensor, channels: str) -> torch.Tensor:
    return rgb_to_ycbcr(rgb)[:, :1] if channels == "y" else rgb


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()}


class Trainer(TrainingRun):
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        spec = arch_spec(cfg.arch)
        if spec.kind != "single" or not spec.trainable:
            raise ValueError(f"architecture {cfg.arch!r} is not a trainable single-image model")
        self.device = resolve_device(cfg.device)
        self.channels = spec.channels
        torch.manual_seed(cfg.seed)
        given = cfg.arch_args
        if cfg.init is not None and not given:  # continue the weights' own architecture (its card's arguments)
            card = init_card(cfg.init)
            given = card.arch_args if card.architecture == cfg.arch else {}
        self.arch_args = full_arch_args(spec.factory, given)
        self.module: nn.Module = spec.factory(scale=cfg.scale, **self.arch_args).to(self.device)
        self.multi_scale = bool(getattr(self.module, "multi_scale", False))
        self.scales = list(self.module.supported_scales) if self.multi_scale else [cfg.scale]
        self.pyramid = hasattr(self.module, "forward_pyramid")
        self.name = cfg.name or (cfg.arch if self.multi_scale else f"{cfg.arch}_x{cfg.scale}")
        lcm = math.lcm(*self.scales)
        self.patch = cfg.patch - cfg.patch % lcm
        if self.patch != cfg.patch:
            log.warning("patch %d is not a multiple of %d; using %d", cfg.patch, lcm, self.patch)
        cuda = self.device.type == "cuda"
        amp = cfg.amp if cfg.amp != "auto" else default_amp(self.device)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" and cuda else None
        # NHWC on every device, oneDNN's fast layout too: CPU bf16 steps need it (VDSR 2.6x NCHW's speed), fp32
        # ones run at 0.94-1.37x (bench/results/cpu-train-steps-avx512bf16.md)
        self.module.to(memory_format=torch.channels_last)
        if cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.train_forward = torch.compile(self.module) if cfg.compile else self.module
        self.opt = torch.optim.Adam(self.module.parameters(), lr=cfg.lr, fused=cuda)
        self.warmup = cfg.warmup if cfg.warmup is not None else min(500, cfg.iters // 10)
        self.sampler = PatchSampler(cfg.data, self.device, cfg.seed, cfg.scale_augment)
        self.scale_gen = torch.Generator().manual_seed(cfg.seed)  # CPU: drawing a scale never syncs
        self._start_run(cfg.init, cfg.arch, self.arch_args, cfg.scale)
        self.card_stub = self._card(results=[], weights_sha256=None, training=None)

    # ---- paths -------------------------------------------------------------------------------
    @property
    def weights_path(self) -> Path:
        return self.cfg.out / f"{self.name}.safetensors"

    @property
    def card_path(self) -> Path:
        return self.cfg.out / f"{self.name}.json"

    @property
    def ckpt_path(self) -> Path:
        return self.cfg.out / f"{self.name}.ckpt.safetensors"

    # ---- one step ----------------------------------------------------------------------------
    def _batch(self) -> tuple[int, torch.Tensor, list[torch.Tensor]]:
        scale = self.scales[int(torch.randint(len(self.scales), (1,), generator=self.scale_gen))]
        hr = self.sampler.sample(self.cfg.batch, self.patch).float().div_(255.0)
        lr = _to_channels(make_lr(hr, scale), self.channels)
        if self.pyramid:  # level l of L sees the HR patch downscaled by 2^(L-l)
            levels = int(math.log2(scale))
            targets = [imresize_torch_cached(hr, scale=2.0 ** (lv + 1 - levels)) for lv in range(levels - 1)]
            targets = [_to_channels(t, self.channels) for t in [*targets, hr]]
        else:
            targets = [_to_channels(hr, self.channels)]
        lr = lr.contiguous(memory_format=torch.channels_last)
        return scale, lr, targets

    def _predict(self, lr: torch.Tensor, scale: int) -> list[torch.Tensor]:
        if self.pyramid:
            return list(self.module.forward_pyramid(lr))  # type: ignore[operator]
        if self.multi_scale:
            return [self.module.forward_with_scale(lr, scale)]  # type: ignore[operator]
        return [self.train_forward(lr)]

    def train_step(self) -> torch.Tensor:
        scale, lr, targets = self._batch()
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            preds = self._predict(lr, scale)
        loss = sum(_loss_fn(self.cfg.loss, p.float(), t) for p, t in zip(preds, targets, strict=True))
        assert isinstance(loss, torch.Tensor)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.grad_clip, foreach=True)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        return loss.detach()

    def _train_mode(self) -> None:
        """Training mode, with BatchNorm in inference mode under `freeze_batchnorm`. Why: SRResNet's batch
        statistics over 16 small patches differ from the running statistics it is evaluated with; its
        Set5 swung by 0.5 dB at a near-zero learning rate, and recomputing the running statistics over
        1,600 training patches lowered Set5 by 0.11 dB, so the mismatch is not just noisy averages."""
        self.module.train()
        if self.cfg.freeze_batchnorm:
            for m in self.module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    # ---- evaluation --------------------------------------------------------------------------
    def evaluate(self, dataset: str, scale: int, *, lr_consistency: bool = False,
                 dtype: torch.dtype | None = None) -> EvalReport:
        self.module.eval()
        try:
            desc = descriptor_for(self.module, self.card_stub, scale, self.device)
            desc.channels_last = True
            desc.supports_half = dtype is not None
            return evaluate_pairs(desc, list(benchmark_pairs(dataset, scale)), dataset=dataset,
                                  lr_consistency=lr_consistency, dtype=dtype)
        finally:
            self._train_mode()

    def set5_psnr(self) -> float:
        """Model selection metric: mean Set5 PSNR over the scales this network serves."""
        return sum(self.evaluate("Set5", s).psnr_y for s in self.scales) / len(self.scales)

    # ---- checkpoints -------------------------------------------------------------------------
    def _checkpoint_meta(self) -> dict[str, str]:
        return {"config": self.cfg.model_dump_json()}

    @property
    def _generators(self) -> dict[str, torch.Generator]:
        return {"data": self.sampler.generator, "scale": self.scale_gen}

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self) -> None:
        from tqdm import tqdm

        cfg = self.cfg
        cfg.out.mkdir(parents=True, exist_ok=True)
        self._begin_fit(cfg.resume)
        self._train_mode()
        start = time.monotonic()
        loss_sum = torch.zeros((), device=self.device)
        n_loss, last_eval = 0, self.step
        bar = tqdm(total=cfg.iters, initial=self.step, desc=self.name, disable=None, dynamic_ncols=True)
        stopped_by = "iters"
        while self.step < cfg.iters:
            elapsed = self.elapsed_before + time.monotonic() - start
            if cfg.time_budget is not None and elapsed >= cfg.time_budget:
                stopped_by = "time budget"
                break
            progress = self.step / cfg.iters
            if cfg.time_budget:
                progress = max(progress, elapsed / cfg.time_budget)
            for group in self.opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(self.step, progress, self.warmup)
            loss_sum += self.train_step()
            n_loss += 1
            self.step += 1
            bar.update(1)
            if self.step % cfg.log_every == 0:  # the only regular host sync
                mean_loss = float(loss_sum) / n_loss
                if not math.isfinite(mean_loss):
                    if self.best_state is None:
                        raise FloatingPointError(f"loss became {mean_loss} at step {self.step}; lower --lr")
                    # keep what the run achieved: the outputs are written from the best checkpoint
                    log.error("%s: loss became %s at step %d; stopping with the best weights so far",
                              self.name, mean_loss, self.step)
                    stopped_by = "non-finite loss"
                    break
                bar.set_postfix(loss=f"{mean_loss:.4f}", set5=f"{self.best_psnr:.2f}")
                loss_sum.zero_()
                n_loss = 0
            if cfg.eval_every and self.step % cfg.eval_every == 0:
                self._eval_and_checkpoint(self.elapsed_before + time.monotonic() - start, bar)
                last_eval = self.step
        bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if stopped_by != "non-finite loss" and (last_eval != self.step or self.best_state is None):
            self._eval_and_checkpoint(self.elapsed_before + time.monotonic() - start)
        self.train_seconds = self.elapsed_before + time.monotonic() - start
        log.info("%s: stopped by %s after %d steps, %.0f s; best Set5 %.3f dB",
                 self.name, stopped_by, self.step, self.train_seconds, self.best_psnr)

    def _eval_and_checkpoint(self, elapsed: float, bar: object | None = None) -> None:
        psnr = self.set5_psnr()
        self._maybe_best(psnr)
        log.info("%s step %d: Set5 %.3f dB (best %.3f), %.0f s", self.name, self.step, psnr,
                 self.best_psnr, elapsed)
        if bar is not None:
            bar.set_postfix(set5=f"{psnr:.2f}")  # type: ignore[attr-defined]
        self.save_checkpoint(elapsed)

    # ---- outputs -----------------------------------------------------------------------------
    def finish(self) -> ModelCard:
        """Restore the best weights, evaluate everything in fp32, write weights and card."""
        from safetensors.torch import save_file

        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)
        if self.device.type == "cuda":  # card numbers must be reproducible on CPU: plain fp32
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cudnn.benchmark = False
        results = []
        for scale in self.scales:
            for dataset in self.cfg.eval_sets:
                try:
                    rep = self.evaluate(dataset, scale, lr_consistency=dataset in self.cfg.lr_consistency_sets)
                except FileNotFoundError as exc:  # e.g. a GPU box carrying only some sets: measure it later
                    log.warning("%s x%d: %s not evaluated (%s); `python -m model_store.complete_cards` adds it",
                                self.name, scale, dataset, exc)
                    continue
                results.append(card_result(rep, self.cfg.arch))
                log.info("%s x%d %s: %.3f dB / %.4f (paper %s)", self.name, scale, dataset, rep.psnr_y,
                         rep.ssim_y, results[-1].paper_psnr_y)
        half_safe = self._half_precision_safe(results)
        state = _cpu_state(self.module)
        tmp = self.weights_path.with_suffix(".tmp")
        save_file(state, str(tmp))
        tmp.chmod(0o644)  # a shippable package file, not a private one
        os.replace(tmp, self.weights_path)
        card = self._card(results=results, weights_sha256=sha256_file(self.weights_path),
                          training=self._recipe(), half_precision_safe=half_safe)
        self.card_path.write_text(card.model_dump_json(indent=2) + "\n")
        log.info("wrote %s and %s", self.weights_path, self.card_path)
        return card

    def _half_precision_safe(self, results: list[EvalResult]) -> bool | None:
        """Whether bf16 keeps Set5 within HALF_SAFE_DB at every scale; None (not measured, the card says
        fp32) on a CPU where oneDNN does not run bf16 (only PyTorch's reference kernels do): VDSR's first
        bf16 Set5 pass had not ended after 13 minutes on an AVX2 host (fp32: 11 s)."""
        if self.device.type == "cpu" and not cpu_runs_bf16():
            log.warning("%s: no native bf16 on this CPU: bf16 not measured, the card says fp32", self.name)
            return None
        deltas = []
        for scale in self.scales:
            fp32 = next((r.psnr_y for r in results if r.dataset == "Set5" and r.scale == scale), None)
            if fp32 is None:
                fp32 = self.evaluate("Set5", scale).psnr_y
            # the Set5 figures are rounded to 1e-4 dB: far below the 0.02 dB threshold
            deltas.append(abs(self.evaluate("Set5", scale, dtype=torch.bfloat16).psnr_y - fp32))
        log.info("%s: bf16 changes Set5 PSNR by up to %.4f dB", self.name, max(deltas))
        return max(deltas) < HALF_SAFE_DB

    def _augmentation(self) -> str:
        scales = "/".join(str(s) for s in self.scales)
        factors = self.cfg.scale_augment
        shrunk = (f"every image also shrunk by {', '.join(f'{f:g}' for f in factors)} (antialiased bicubic); "
                  if factors else "")
        return (f"{shrunk}random HR crops, flips and transposes; LR x{scales} by MATLAB antialiased bicubic, "
                "8-bit rounded" + ("; one scale drawn per batch" if self.multi_scale else ""))

    def _recipe(self) -> TrainingRecipe:
        cfg = self.cfg
        root = data_root()
        data = [str(p.resolve().relative_to(root)) if p.resolve().is_relative_to(root) else str(p) for p in cfg.data]
        schedule = f"cosine, {self.warmup} warm-up iterations, over {cfg.iters} iterations"
        if cfg.time_budget:
            schedule += f" or {cfg.time_budget:.0f} s of training, whichever ends first"
        precision = {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + grad scaling",
                     None: "fp32"}[self.amp_dtype]
        iterations, hardware, notes, earlier = self.provenance(hardware_string(self.device, cfg.hardware_note),
                                                               "weights = best Set5 checkpoint")
        return TrainingRecipe(
            data=data, iterations=iterations, batch_size=cfg.batch, patch_size=self.patch,
            loss=cfg.loss,
            optimizer="Adam (0.9, 0.999)" + (f", grad clip {cfg.grad_clip}" if cfg.grad_clip else ""),
            learning_rate=cfg.lr, schedule=schedule,
            augmentation=self._augmentation(),
            seed=cfg.seed, precision=precision, hardware=hardware,
            wall_time_s=round(self.prior.seconds + self.train_seconds, 1), command=cfg.command,
            notes=notes + ("; loss summed over every pyramid level" if self.pyramid else "")
            + ("; BatchNorm frozen (running statistics kept, layers in inference mode)" if cfg.freeze_batchnorm
               else ""),
            earlier_runs=earlier,
        )

    def _card(self, *, results: list[EvalResult], weights_sha256: str | None, training: TrainingRecipe | None,
              half_precision_safe: bool | None = False) -> ModelCard:
        """`half_precision_safe` None: not measured (serves in fp32), and the notes say so."""
        in_ch = 1 if self.channels == "y" else 3
        self.module.eval()
        flops = flops_per_output_pixel(self.module, in_ch, self.scales[0])
        self._train_mode()
        return ModelCard(
            name=self.name, family=self.cfg.arch, architecture=self.cfg.arch,
            arch_args=self.arch_args, scales=self.scales, kind="single", channels=self.channels,  # type: ignore[arg-type]
            params=count_params(self.module), flops_per_output_pixel=flops,
            weights_file=self.weights_path.name, weights_sha256=weights_sha256,
            half_precision_safe=bool(half_precision_safe),
            receptive_field=int(getattr(self.module, "receptive_field", 8)),
            size_multiple=int(getattr(self.module, "size_multiple", 1)),
            training=training, results=results, paper=PAPERS.get(self.cfg.arch, ""),
            notes=" ".join(filter(None, [
                shortfall_note(results, self.cfg.arch),
                "bf16 not measured (the training CPU has no native bf16): serves in fp32."
                if half_precision_safe is None else "",
            ])),
        )


def train(cfg: TrainConfig) -> ModelCard:
    trainer = Trainer(cfg)
    trainer.fit()
    return trainer.finish()
