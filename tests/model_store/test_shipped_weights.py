"""Every shipped model card: its weights match the sha256 and reproduce the card's Set5 PSNR (single-image
models on the benchmark pairs, burst models on the evaluation bursts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_store.burst.descriptor import load_burst_descriptor
from model_store.burst.evaluate_burst import EVAL_FRAMES, eval_bursts, run_model
from model_store.card import SHIPPED_WEIGHTS_DIR, ModelCard
from model_store.data import benchmark_pairs
from model_store.evaluate import evaluate_pairs
from model_store.registry import load_descriptor, sha256_file

SLOW_FLOPS = 200_000  # deep pre-upsampling nets take a while on Set5 on 2 CPU cores


def _all_cards() -> list[ModelCard]:
    cards = [ModelCard.model_validate(json.loads(p.read_text())) for p in sorted(SHIPPED_WEIGHTS_DIR.glob("*.json"))]
    return [c for c in cards if c.weights_file]


def _cards() -> list[ModelCard]:
    return [c for c in _all_cards() if c.kind == "single"]


def _burst_cards() -> list[ModelCard]:
    return [c for c in _all_cards() if c.kind == "burst"]


def _cases() -> list[object]:
    return [
        pytest.param(card, scale, id=f"{card.name}-x{scale}",
                     marks=[pytest.mark.slow] if card.flops_per_output_pixel > SLOW_FLOPS else [])
        for card in _cards() for scale in card.scales
    ]


def test_some_model_is_shipped() -> None:
    assert _cards(), f"no single-image model card in {SHIPPED_WEIGHTS_DIR}"


@pytest.mark.parametrize("card", _all_cards(), ids=lambda c: c.name)
def test_weights_match_sha256_and_size(card: ModelCard) -> None:
    assert card.weights_file is not None
    path = Path(SHIPPED_WEIGHTS_DIR) / card.weights_file
    assert sha256_file(path) == card.weights_sha256
    assert path.stat().st_size < 20 * 2**20


@pytest.mark.parametrize(("card", "scale"), _cases())
def test_card_set5_psnr_is_reproduced(card: ModelCard, scale: int) -> None:
    claimed = card.result("Set5", scale)
    assert claimed is not None, f"{card.name} has no Set5 x{scale} result"
    desc = load_descriptor(card, scale)
    report = evaluate_pairs(desc, list(benchmark_pairs("Set5", scale)), dataset="Set5")
    assert abs(report.psnr_y - claimed.psnr_y) < 0.02


def test_learned_burst_models_are_shipped() -> None:
    assert {c.architecture for c in _burst_cards()} >= {"shift_pool", "misr_gru"}


@pytest.mark.parametrize("card", _burst_cards(), ids=lambda c: c.name)
def test_burst_card_set5_psnr_is_reproduced(card: ModelCard) -> None:
    # the card's figure is on the evaluation bursts (fixed seed) at the card's K, through the same
    # descriptor a job uses (registration, rejection, exposure normalisation, tiling)
    scale = card.scales[0]
    claimed = card.result("Set5", scale)
    assert claimed is not None and claimed.protocol is not None
    frames = int(claimed.protocol.split()[0].removeprefix("K="))
    desc = load_burst_descriptor(card, scale)
    score = run_model(desc, eval_bursts("Set5", scale, EVAL_FRAMES), frames, dataset="Set5")
    assert abs(score.psnr_y - claimed.psnr_y) < 0.02
