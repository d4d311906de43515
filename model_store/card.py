"""Model cards and the catalog of shipped models. No torch here: the API reads this to validate
`model`/`scale` and to answer `GET /v1/models` without loading any network.

One card per weight file, stored as `<name>.json` beside `<name>.safetensors` in a weights folder
(the shipped `model_store/weights/` plus any user folder). Parameter-free models (bicubic, the
classical burst baseline) have built-in cards.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model_store.paper_results import PAPER_TRAINING_DATA

log = logging.getLogger(__name__)

SHIPPED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvalResult(_Strict):
    dataset: str  # Set5 | Set14 | BSD100 | burst sets
    scale: int
    psnr_y: float
    ssim_y: float
    paper_psnr_y: float | None = None
    paper_ssim_y: float | None = None
    lr_consistency_psnr: float | None = None
    protocol: str = "Y (BT.601), shave=scale, 8-bit rounded"


# the sentence `shortfall_note` writes, and the one it replaced on older cards
_SHORTFALL = re.compile(r"Below the paper: .*?(?:More iterations \(GPU\) would close most of it|"
                        r"closing it may take more data)\.")


def shortfall_note(results: list[EvalResult], family: str) -> str:
    """The card note listing every cell below the paper's figure (empty when none is), what the paper
    trained on, and what would narrow the gap: more steps, which the GPU run gives every model, and more
    data, which most papers had."""
    cells = [f"{r.dataset} x{r.scale} {r.psnr_y - r.paper_psnr_y:+.2f} dB" for r in results
             if r.paper_psnr_y is not None and r.psnr_y < r.paper_psnr_y]
    if not cells:
        return ""
    paper_data = PAPER_TRAINING_DATA.get(family)
    trained_on = f"The paper trained on {paper_data}, these weights" if paper_data else "These weights"
    return (f"Below the paper: {', '.join(cells)}. {trained_on} on T91 + SunHays80 (171 images): more steps "
            "(a GPU run) would narrow the gap; closing it may take more data.")


def with_shortfall_note(notes: str, results: list[EvalResult], family: str) -> str:
    """`notes` with its shortfall sentence replaced by the one `results` call for (other text kept)."""
    rest = _SHORTFALL.sub("", notes).strip()
    return " ".join(part for part in (shortfall_note(results, family), rest) if part)


class EarlierRun(_Strict):
    """A run before the one that produced the card's weights: what its card said when the next run
    started from its weights (`srserve train --init`)."""

    name: str
    weights_sha256: str | None  # the weights this run produced and the next one started from
    iterations: int  # steps behind those weights, all runs before them included
    wall_time_s: float  # likewise
    command: str
    notes: str = ""  # this run's own; the runs before it are the entries before it


class TrainingRecipe(_Strict):
    data: list[str]
    iterations: int  # steps behind the shipped weights (the best checkpoint's), earlier runs' included
    batch_size: int
    patch_size: int  # HR patch side in pixels
    loss: str
    optimizer: str
    learning_rate: float
    schedule: str
    augmentation: str
    seed: int
    precision: str
    hardware: str  # of every run, in order ("A, then B")
    wall_time_s: float  # training seconds of every run, in full
    command: str  # the last run's
    notes: str = ""  # the last run's
    earlier_runs: list[EarlierRun] = Field(default_factory=list)  # the lineage behind `--init`, oldest first


class ModelCard(_Strict):
    name: str = Field(pattern=NAME_PATTERN.pattern)  # what users pass as `model`, e.g. fsrcnn_x4
    family: str  # e.g. fsrcnn: `model=fsrcnn&scale=4` resolves to fsrcnn_x4
    architecture: str  # registry id in model_store.registry
    arch_args: dict[str, int | float | str | bool | list[int]] = Field(default_factory=dict)
    scales: list[int]  # one entry for most; VDSR and bicubic serve several
    kind: Literal["single", "burst"] = "single"
    channels: Literal["y", "rgb"]  # y: Cb/Cr upsampled bicubically
    params: int
    flops_per_output_pixel: int
    weights_file: str | None = None  # relative to the card's folder
    weights_sha256: str | None = None
    half_precision_safe: bool = False  # bf16/fp16 change Set5 PSNR by < 0.02 dB
    # the largest Set5 PSNR change (dB) of bf16 through the CPU serving path, which differs from CUDA's
    # (model_store.precision); None = not measured: CPUs serve the model in fp32
    cpu_bf16_psnr_delta: float | None = None
    receptive_field: int = 8  # LR pixels of context each output needs: the minimum tile overlap
    size_multiple: int = 1  # input H and W must be multiples of this (padding is the caller's)
    min_frames: int = 1
    max_frames: int = 1
    training: TrainingRecipe | None = None
    results: list[EvalResult] = Field(default_factory=list)
    paper: str = ""
    licence: str = "Apache-2.0"
    source: Literal["shipped", "user", "builtin"] = "shipped"
    notes: str = ""

    def result(self, dataset: str, scale: int) -> EvalResult | None:
        return next((r for r in self.results if r.dataset == dataset and r.scale == scale), None)

    def set5_psnr(self, scale: int) -> float | None:
        r = self.result("Set5", scale)
        return r.psnr_y if r else None


def builtin_cards() -> list[ModelCard]:
    return [
        ModelCard(
            name="bicubic",
            family="bicubic",
            architecture="bicubic",
            scales=[2, 3, 4, 8],
            channels="rgb",
            params=0,
            flops_per_output_pixel=2 * 4 * 2 * 3,  # 4 taps per axis, multiply-add, 3 channels
            half_precision_safe=False,
            receptive_field=3,
            source="builtin",
            paper="Keys 1981; MATLAB imresize (a = -0.5)",
            results=[
                EvalResult(dataset=d, scale=s, psnr_y=p, ssim_y=q, paper_psnr_y=pp, paper_ssim_y=pq)
                for d, s, p, q, pp, pq in _BICUBIC_TABLE
            ],
            notes="Parameter-free baseline: MATLAB-compatible bicubic interpolation of RGB.",
        )
    ]


# Bicubic on the eval sets: (set, scale, our PSNR, our SSIM, published PSNR, published SSIM). Ours are
# measured with model_store.metrics on the given LR images (the sanity check of the metric code: within
# 0.15 dB of the EDSR/RCAN/SwinIR papers' table); x8 pairs are made here from the x4 HR images, and
# LapSRN's paper publishes only Set5 x8.
_BICUBIC_TABLE: list[tuple[str, int, float, float, float | None, float | None]] = [
    ("Set5", 2, 33.68, 0.9304, 33.66, 0.9299),
    ("Set5", 3, 30.41, 0.8690, 30.39, 0.8682),
    ("Set5", 4, 28.43, 0.8113, 28.42, 0.8104),
    ("Set5", 8, 24.40, 0.6582, 24.40, None),
    ("Set14", 2, 30.33, 0.8700, 30.24, 0.8688),
    ("Set14", 3, 27.63, 0.7760, 27.55, 0.7742),
    ("Set14", 4, 26.09, 0.7049, 26.00, 0.7027),
    ("Set14", 8, 23.19, 0.5668, None, None),
    ("BSD100", 2, 29.56, 0.8435, 29.56, 0.8431),
    ("BSD100", 3, 27.21, 0.7391, 27.21, 0.7385),
    ("BSD100", 4, 25.96, 0.6682, 25.96, 0.6675),
    ("BSD100", 8, 23.67, 0.5444, None, None),
]


class UnknownModelError(LookupError):
    def __init__(self, message: str, valid: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.valid = valid


def cards_with_weights(folder: Path) -> list[tuple[Path, ModelCard]]:
    """(card file, card) for every model card in `folder` that names a weights file, by file name;
    other JSON there (logs, benchmark tables) is not a card and is passed over."""
    found = []
    for card_file in sorted(folder.glob("*.json")):
        try:
            card = ModelCard.model_validate_json(card_file.read_text())
        except ValueError:
            continue
        if card.weights_file:
            found.append((card_file, card))
    return found


class Catalog:
    """All cards from the given folders plus built-ins, indexed by name; resolves (model, scale)."""

    def __init__(self, cards: list[ModelCard], folders: dict[str, Path] | None = None) -> None:
        self._cards: dict[str, ModelCard] = {}
        self._folders = folders or {}
        for card in cards:
            if card.name in self._cards:
                raise ValueError(f"duplicate model name {card.name!r}")
            self._cards[card.name] = card

    @classmethod
    def load(cls, extra_dirs: list[Path] | None = None) -> Catalog:
        cards = builtin_cards()
        folders: dict[str, Path] = {}
        for folder in [SHIPPED_WEIGHTS_DIR, *(extra_dirs or [])]:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.json")):
                try:
                    card = ModelCard.model_validate(json.loads(path.read_text()))
                except (ValueError, OSError) as exc:
                    log.warning("skipping unreadable model card %s: %s", path, exc)
                    continue
                if any(c.name == card.name for c in cards):
                    log.warning("skipping %s: model name %s already taken", path, card.name)
                    continue
                cards.append(card)
                folders[card.name] = path.parent
        return cls(cards, folders)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._cards.values())

    def __len__(self) -> int:
        return len(self._cards)

    def get(self, name: str) -> ModelCard:
        return self._cards[name]

    def folder(self, name: str) -> Path:
        return self._folders.get(name, SHIPPED_WEIGHTS_DIR)

    def names(self, kind: str | None = None) -> list[str]:
        return sorted(n for n, c in self._cards.items() if kind is None or c.kind == kind)

    def scales(self, kind: str = "single") -> list[int]:
        return sorted({s for c in self._cards.values() if c.kind == kind for s in c.scales})

    def default_for(self, scale: int, kind: str = "single") -> ModelCard | None:
        """The best available model for a scale: highest measured Set5 PSNR (bicubic if nothing else)."""
        candidates = [c for c in self._cards.values() if c.kind == kind and scale in c.scales]
        if not candidates:
            return None

        def rank(card: ModelCard) -> tuple[float, int]:
            psnr = card.set5_psnr(scale)
            # never pick a perceptual (GAN) model by default: it trades PSNR for texture on purpose
            penalty = card.family.startswith(("srgan", "esrgan"))
            return (-1e9 if psnr is None or penalty else psnr, -card.params)

        return max(candidates, key=rank)

    def resolve(self, model: str | None, scale: int, kind: str = "single") -> ModelCard:
        """Map the request's `model` (name, family, or None) and `scale` to one card, or raise."""
        valid = self.names(kind)
        if model is None:
            card = self.default_for(scale, kind)
            if card is None:
                raise UnknownModelError(f"no {kind} model supports scale {scale}", valid)
            return card
        card = self._cards.get(model)
        if card is None:
            # family name (`fsrcnn`) or family + scale (`vdsr_x3` served by the multi-scale `vdsr`)
            family = re.sub(r"_x\d+$", "", model)
            matches = [c for c in self._cards.values() if c.family in (model, family) and scale in c.scales]
            if matches:
                card = max(matches, key=lambda c: c.set5_psnr(scale) or 0.0)
            elif any(c.family in (model, family) for c in self._cards.values()):
                fam_scales = sorted(
                    {s for c in self._cards.values() if c.family in (model, family) for s in c.scales}
                )
                raise UnsupportedScaleError(
                    f"model {model!r} does not support scale {scale}; it supports {fam_scales}", fam_scales
                )
            else:
                raise UnknownModelError(f"unknown model {model!r}", valid)
        if card.kind != kind:
            raise UnknownModelError(
                f"model {model!r} is a {card.kind} model; this request needs a {kind} model", valid
            )
        if scale not in card.scales:
            raise UnsupportedScaleError(
                f"model {card.name!r} does not support scale {scale}; it supports {card.scales}", card.scales
            )
        return card


class UnsupportedScaleError(ValueError):
    def __init__(self, message: str, scales: list[int]) -> None:
        super().__init__(message)
        self.message = message
        self.scales = scales
