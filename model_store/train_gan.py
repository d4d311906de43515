"""SRGAN fine-tuning: the SRResNet generator, initialised from a trained `srresnet_x4`, trained against
the paper's VGG-style discriminator.

Losses (generator), all on RGB in [0, 1]:
- adversarial: relativistic average GAN (ESRGAN's RaGAN, BCE on D(real) - mean D(fake) and back),
  which trains more stably than SRGAN's plain BCE at the same weight;
- content: L1 between the discriminator's features of SR and HR, the 4 stride stages averaged
  (discriminator feature matching, as pix2pixHD's content loss). The SRGAN paper uses VGG19
  features, but pretrained VGG weights cannot be downloaded here; a discriminator trained on
  real-vs-SR patches of this data learns exactly the features that separate SR from real texture,
  so matching them pushes the generator towards real texture statistics rather than towards the
  blurry mean an L1/L2 loss prefers;
- a small L1 pixel term (keeps colours and edges where they are), and an L1 LR-consistency term on
  the bicubic-downscaled output (constrains only the low frequencies the input actually holds,
  leaving the high frequencies to the adversarial and feature terms).

Default weights and learning rate come from ~900-iteration H200 trials from one SRResNet init
(Set5 x4: init 27.58 dB, LR-consistency 32.5 dB, high-frequency energy 674; HR 803):
  lr_g 2e-5, pixel 0.1, LR 2.0, features 0.1, adversarial 1e-3 -> 25.90 dB, LR-c. 32.7 dB, HF 2253;
  lr_g 2e-5, pixel 0.1, LR 2.0, features 1.0, adversarial 5e-3 -> 25.28 dB, LR-c. 30.0 dB, HF 2641;
  lr_g 1e-5, same weights                                       -> 25.38 dB, LR-c. 29.8 dB, HF 2229;
and at the paper's lr_g 1e-4 every weighting lost about 4 dB. Such short runs over-sharpen (HF
energy ~3x HR's); longer fine-tuning is what the GAN needs.

Data come from `model_store.data.PatchSampler` (all images on the device, no host round trips),
mixed precision is bf16 autocast on CUDA and on CPUs with native bf16 (`--precision fp32` turns it
off), and a resumable checkpoint (`<name>.ckpt.safetensors`, written and read by the zoo trainer's
`save_run_checkpoint` / `load_run_checkpoint`: tensors, numbers as metadata, nothing to unpickle) lets
training continue across runs. The result is written like every trained model: `<name>.safetensors`
+ `<name>.json` card with measured results.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from model_store.archs.srresnet import SRGANDiscriminator
from model_store.card import NAME_PATTERN, SHIPPED_WEIGHTS_DIR, Catalog, EvalResult, ModelCard, TrainingRecipe
from model_store.data import DEFAULT_TRAIN_SETS, PatchSampler, benchmark_pairs, default_train_dirs, make_lr
from model_store.fast_resize import imresize_torch_cached
from model_store.metrics import high_frequency_energy
from model_store.precision import cpu_trains_faster_in_bf16
from model_store.registry import count_params, create_model, sha256_file
from model_store.train import hardware_string, load_run_checkpoint, save_run_checkpoint

log = logging.getLogger(__name__)

SRGAN_PAPER = (
    "Ledig et al., Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial "
    "Network, CVPR 2017 (adversarial loss: Wang et al., ESRGAN, ECCVW 2018)"
)
# Published SRGAN x4 (Y PSNR / SSIM): PSNR drops against SRResNet by design.
# Documented floor for the LR-consistency PSNR of the fine-tuned model (Set5 mean): a generator
# whose downscaled output stops matching its input has stopped super-resolving and started inventing.
# In 30 s H200 trials the defaults kept it within 0.2 dB of a (weak, 32.5 dB) SRResNet init.
LR_CONSISTENCY_FLOOR_DB = 33.0


class GanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="srgan_x4", pattern=NAME_PATTERN.pattern)
    init: str = "srresnet_x4"  # a card name in the catalog, or a .safetensors of an srresnet
    arch_args: dict[str, int] = Field(default_factory=dict)  # srresnet arguments when `init` is a file
    scale: int = 4
    iterations: int = 20_000  # total, counting iterations of earlier (resumed) runs
    time_budget_s: float | None = None  # stop early (checkpoint + card) after this much training time
    batch_size: int = 32
    patch_size: int = 128  # HR side
    disc_num_feat: int = 64  # discriminator width (the paper's 64; smaller only for smoke tests)
    lr_g: float = 2e-5  # below the paper's 1e-4: short runs at 1e-4 lost 4 dB to noise (H200 trials)
    lr_d: float = 1e-4
    decay_at: float = 0.5  # progress after which both learning rates drop x0.1
    d_warmup: int = 200  # first iterations train only the discriminator, so G's first steps get real signal
    # weights picked from short H200 trials (docs in the module notes): the mildest kept LR-consistency
    # at the initial model's level while still raising high-frequency energy well above SRResNet's
    pixel_weight: float = 0.1
    lr_consistency_weight: float = 2.0
    feature_weight: float = 0.1
    adversarial_weight: float = 1e-3
    seed: int = 0
    device: str = "auto"  # auto: cuda when available
    precision: Literal["bf16", "fp32"] = "bf16"
    train_dirs: list[Path] = Field(default_factory=default_train_dirs)
    out_dir: Path = SHIPPED_WEIGHTS_DIR
    weights_dirs: list[Path] = Field(default_factory=list)  # extra folders to find `init` in
    resume: bool = True  # continue from `<out_dir>/<name>.ckpt.safetensors` when it exists
    log_every: int = 100
    eval_sets: list[str] = Field(default_factory=lambda: ["Set5", "Set14", "BSD100"])


def relativistic_losses(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(discriminator loss, generator loss) of the relativistic average GAN, from raw logits."""
    real, fake = real.float(), fake.float()
    real_rel = real - fake.mean()
    fake_rel = fake - real.mean()
    ones, zeros = torch.ones_like(real), torch.zeros_like(fake)
    d_loss = 0.5 * (
        F.binary_cross_entropy_with_logits(real_rel, ones) + F.binary_cross_entropy_with_logits(fake_rel, zeros)
    )
    g_loss = 0.5 * (
        F.binary_cross_entropy_with_logits(real_rel, zeros) + F.binary_cross_entropy_with_logits(fake_rel, ones)
    )
    return d_loss, g_loss


def feature_matching_loss(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([F.l1_loss(f.float(), r.float()) for f, r in zip(fake, real, strict=True)]).mean()


def _resolve_init(cfg: GanConfig) -> tuple[dict[str, torch.Tensor], ModelCard | None]:
    from safetensors.torch import load_file

    path = Path(cfg.init)
    if path.suffix == ".safetensors" and path.is_file():
        return load_file(str(path)), None
    catalog = Catalog.load(cfg.weights_dirs or None)
    card = catalog.get(cfg.init)
    if card.architecture != "srresnet" or not card.weights_file:
        raise ValueError(f"{cfg.init!r} is not a trained srresnet (architecture {card.architecture!r})")
    if cfg.scale not in card.scales:
        raise ValueError(f"{cfg.init!r} is a x{card.scales} model, not x{cfg.scale}")
    weights = catalog.folder(card.name) / card.weights_file
    return load_file(str(weights)), card


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    # readers (the catalog, a resumed run) never see a half-written file
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


class SRGANTrainer:
    def __init__(self, cfg: GanConfig) -> None:
        self.cfg = cfg
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(auto if cfg.device == "auto" else cfg.device)
        torch.manual_seed(cfg.seed)
        init_state, self.init_card = _resolve_init(cfg)
        arch_args = dict(self.init_card.arch_args) if self.init_card else dict(cfg.arch_args)
        self.arch_args = arch_args
        self.generator = create_model("srresnet", scale=cfg.scale, **arch_args).to(self.device)
        self.generator.load_state_dict(init_state, strict=True)
        self.discriminator = SRGANDiscriminator(num_feat=cfg.disc_num_feat).to(self.device)
        # as the zoo trainer: NHWC, and bf16 where it runs in hardware (CUDA, AVX512-BF16/AMX CPUs)
        self.use_amp = cfg.precision == "bf16" and (self.device.type == "cuda" or cpu_trains_faster_in_bf16())
        self.generator.to(memory_format=torch.channels_last)
        self.discriminator.to(memory_format=torch.channels_last)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_g, betas=(0.9, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d, betas=(0.9, 0.999))
        self.iteration = 0
        self.wall_time_s = 0.0
        self.hardware: list[str] = []
        self.sampler = PatchSampler(cfg.train_dirs, self.device, cfg.seed)
        self.ckpt_path = cfg.out_dir / f"{cfg.name}.ckpt.safetensors"
        if cfg.resume and self.ckpt_path.is_file():
            self._load_checkpoint()

    # -- checkpoints ------------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        meta = {"iteration": str(self.iteration), "wall_time_s": repr(self.wall_time_s),
                "hardware": json.dumps(self.hardware), "config": self.cfg.model_dump_json()}
        self.cfg.out_dir.mkdir(parents=True, exist_ok=True)
        save_run_checkpoint(self.ckpt_path, self._modules, self._optimizers, self._generators, meta)

    def _load_checkpoint(self) -> None:
        _, meta = load_run_checkpoint(self.ckpt_path, self._modules, self._optimizers, self._generators,
                                      self.device)
        self.iteration = int(meta["iteration"])
        self.wall_time_s = float(meta["wall_time_s"])
        self.hardware = list(json.loads(meta["hardware"]))
        log.info("resumed %s at iteration %d", self.ckpt_path, self.iteration)

    @property
    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    @property
    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    @property
    def _generators(self) -> dict[str, torch.Generator]:
        return {"data": self.sampler.generator}

    # -- training ---------------------------------------------------------------------------------
    def _learning_rate_factor(self, elapsed_s: float) -> float:
        # progress as the main trainer: iterations, or the time budget when that ends first
        progress = self.iteration / self.cfg.iterations
        if self.cfg.time_budget_s:
            progress = max(progress, elapsed_s / self.cfg.time_budget_s)
        return 0.1 if progress >= self.cfg.decay_at else 1.0

    def _step(self, train_generator: bool = True) -> dict[str, torch.Tensor]:
        cfg, g, d = self.cfg, self.generator, self.discriminator
        hr = self.sampler.sample(cfg.batch_size, cfg.patch_size).float().div_(255.0)
        lr = make_lr(hr, cfg.scale).contiguous(memory_format=torch.channels_last)
        hr = hr.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            with torch.set_grad_enabled(train_generator):  # no generator graph while D warms up
                fake = g(lr)

            # discriminator
            d.requires_grad_(True)
            real_logits = d(hr)
            fake_logits = d(fake.detach())
            d_loss, _ = relativistic_losses(real_logits, fake_logits)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        # generator
        d.requires_grad_(False)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            with torch.no_grad():
                real_logits, real_feats = d.forward_features(hr)
            fake_logits, fake_feats = d.forward_features(fake)
            _, adv = relativistic_losses(real_logits, fake_logits)
            feat = feature_matching_loss(fake_feats, real_feats)
        # pixel-space terms in fp32: the differences they measure are a few 8-bit levels
        fake32 = fake.float()
        pixel = F.l1_loss(fake32, hr)
        lr_cons = F.l1_loss(imresize_torch_cached(fake32, scale=1.0 / cfg.scale), lr)
        g_loss = (
            cfg.adversarial_weight * adv
            + cfg.feature_weight * feat
            + cfg.pixel_weight * pixel
            + cfg.lr_consistency_weight * lr_cons
        )
        if train_generator:
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_g.step()
        # tensors, not floats: reading them syncs the GPU, so only the logging step does
        return {
            k: v.detach()
            for k, v in (("d", d_loss), ("g_adv", adv), ("g_feat", feat), ("pixel", pixel), ("lr_cons", lr_cons))
        }

    def train(self) -> ModelCard:
        cfg = self.cfg
        hw = hardware_string(self.device)
        if hw not in self.hardware:
            self.hardware.append(hw)
        self.generator.train()
        self.discriminator.train()
        start = time.perf_counter()
        start_wall = self.wall_time_s
        start_iter = self.iteration
        while self.iteration < cfg.iterations:
            factor = self._learning_rate_factor(time.perf_counter() - start)
            for opt, base in ((self.opt_g, cfg.lr_g), (self.opt_d, cfg.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = base * factor
            losses = self._step(train_generator=self.iteration >= cfg.d_warmup)
            self.iteration += 1
            elapsed = time.perf_counter() - start
            self.wall_time_s = start_wall + elapsed
            if self.iteration % cfg.log_every == 0 or self.iteration == cfg.iterations:
                vals = {k: round(float(v), 5) for k, v in losses.items()}
                rate = (self.iteration - start_iter) / max(elapsed, 1e-9)
                log.info("srgan iter %d/%d %.1f it/s %s", self.iteration, cfg.iterations, rate, vals)
            if cfg.time_budget_s is not None and elapsed >= cfg.time_budget_s:
                log.info("time budget of %.0f s reached at iteration %d", cfg.time_budget_s, self.iteration)
                break
        self._save_checkpoint()
        return self.write_model()

    # -- output -----------------------------------------------------------------------------------
    def write_model(self) -> ModelCard:
        from safetensors.torch import save_file

        from model_store.evaluate import card_result, descriptor_for, evaluate_pairs
        from model_store.profiling import flops_per_output_pixel

        cfg = self.cfg
        g = self.generator.eval()
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        weights = cfg.out_dir / f"{cfg.name}.safetensors"
        state = {k: v.detach().float().cpu().contiguous() for k, v in g.state_dict().items()}
        _atomic_write(weights, lambda p: save_file(state, str(p)))

        card = self._card(weights, results=[], flops=flops_per_output_pixel(g, 3, cfg.scale))
        results: list[EvalResult] = []
        hf_note = ""
        for dataset in cfg.eval_sets:
            try:
                pairs = list(benchmark_pairs(dataset, cfg.scale))
            except FileNotFoundError as exc:  # measured later by `python -m model_store.complete_cards`
                log.warning("%s not evaluated: %s", dataset, exc)
                continue
            desc = descriptor_for(g, card, cfg.scale, self.device)
            report = evaluate_pairs(desc, pairs, dataset=dataset, lr_consistency=True)
            results.append(card_result(report, "srgan"))
            log.info("%s x%d: %.3f dB / %.4f", dataset, cfg.scale, report.psnr_y, report.ssim_y)
        if "Set5" in cfg.eval_sets:
            hf_note = self._texture_note()
        card = self._card(weights, results=results, flops=card.flops_per_output_pixel, extra_notes=hf_note)
        path = cfg.out_dir / f"{cfg.name}.json"
        _atomic_write(path, lambda p: p.write_text(card.model_dump_json(indent=2) + "\n"))
        log.info("wrote %s and %s", weights, path)
        return card

    def _texture_note(self) -> str:
        """High-frequency energy on Set5, SRGAN vs its SRResNet init vs HR: the texture the GAN adds."""
        from model_store.evaluate import first_image_uint8, uint8_to_batch

        init_state, _ = _resolve_init(self.cfg)
        base = create_model("srresnet", scale=self.cfg.scale, **self.arch_args).to(self.device).eval()
        base.load_state_dict(init_state)
        energies = {"srgan": 0.0, "init": 0.0, "hr": 0.0}
        pairs = list(benchmark_pairs("Set5", self.cfg.scale))
        with torch.inference_mode():
            for pair in pairs:
                lr = uint8_to_batch(pair.lr, self.device)
                energies["srgan"] += high_frequency_energy(first_image_uint8(self.generator(lr))) / len(pairs)
                energies["init"] += high_frequency_energy(first_image_uint8(base(lr))) / len(pairs)
                energies["hr"] += high_frequency_energy(pair.hr) / len(pairs)
        log.info("Set5 high-frequency energy: %s", {k: round(v, 1) for k, v in energies.items()})
        return (
            f" Set5 high-frequency energy (mean squared Laplacian of luma): SRGAN {energies['srgan']:.1f}, "
            f"the {self.cfg.init} weights it started from {energies['init']:.1f}, HR {energies['hr']:.1f}."
        )

    def _card(self, weights: Path, *, results: list[EvalResult], flops: int, extra_notes: str = "") -> ModelCard:
        cfg, g = self.cfg, self.generator
        recipe = TrainingRecipe(
            data=[p.name for p in cfg.train_dirs] or list(DEFAULT_TRAIN_SETS),
            iterations=self.iteration,
            batch_size=cfg.batch_size,
            patch_size=cfg.patch_size,
            loss=(
                f"{cfg.adversarial_weight:g} x RaGAN + {cfg.feature_weight:g} x L1 discriminator feature matching "
                f"+ {cfg.pixel_weight:g} x L1 pixel + {cfg.lr_consistency_weight:g} x L1 LR-consistency"
            ),
            optimizer="Adam(0.9, 0.999) for generator and discriminator",
            learning_rate=cfg.lr_g,
            schedule=(
                f"discriminator alone for {cfg.d_warmup} iterations, then constant, x0.1 after {cfg.decay_at:.0%} "
                f"of {cfg.iterations} iterations"
                + (f" or of {cfg.time_budget_s:.0f} s, whichever comes first" if cfg.time_budget_s else "")
            ),
            augmentation="random crops, flips and transposes (dihedral group)",
            seed=cfg.seed,
            precision="bf16 autocast" if self.use_amp else "fp32",
            hardware=" + ".join(self.hardware),
            wall_time_s=round(self.wall_time_s, 1),
            command=" ".join(shlex.quote(a) for a in sys.argv) if sys.argv else "",
            notes=f"generator initialised from {cfg.init}",
        )
        return ModelCard(
            name=cfg.name,
            family="srgan",
            architecture="srresnet",
            arch_args=self.arch_args,  # type: ignore[arg-type]
            scales=[cfg.scale],
            channels="rgb",
            params=count_params(g),
            flops_per_output_pixel=flops,
            weights_file=weights.name,
            weights_sha256=sha256_file(weights),
            half_precision_safe=False,
            receptive_field=int(getattr(g, "receptive_field", 40)),
            size_multiple=1,
            training=recipe,
            results=results,
            paper=SRGAN_PAPER,
            notes=(
                "Perceptual (GAN) model: trades PSNR for texture on purpose, never the default for a scale. "
                "Content loss is discriminator feature matching instead of the paper's VGG19 features "
                "(no pretrained VGG can be downloaded here): the discriminator's 4 stride stages are "
                "trained to separate SR from real patches of this data, so matching them moves SR texture "
                "statistics towards real ones (pix2pixHD uses the same loss). A small L1 pixel term and an "
                "L1 term on the bicubic-downscaled output keep colours and low frequencies faithful to the "
                f"input; the documented LR-consistency floor is {LR_CONSISTENCY_FLOOR_DB} dB on Set5." + extra_notes
            ),
        )


def train_srgan(cfg: GanConfig) -> ModelCard:
    if cfg.scale != 4:
        log.warning("SRGAN is published for x4 only; training x%d anyway", cfg.scale)
    trainer = SRGANTrainer(cfg)
    card = trainer.train()
    log.info("card: %s", json.dumps([r.model_dump() for r in card.results]))
    return card
