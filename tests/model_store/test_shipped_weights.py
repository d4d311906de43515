"""Every shipped model card: its weights match the sha256 and reproduce the card's Set5 PSNR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_store.card import SHIPPED_WEIGHTS_DIR, ModelCard
from model_store.data import benchmark_pairs
from model_store.evaluate import evaluate_pairs
from model_store.registry import load_descriptor, sha256_file

SLOW_FLOPS = 200_000  # deep pre-upsampling nets take a while on Set5 on 2 CPU cores


def _cards() -> list[ModelCard]:
    cards = [ModelCard.model_validate(json.loads(p.read_text())) for p in sorted(SHIPPED_WEIGHTS_DIR.glob("*.json"))]
    return [c for c in cards if c.kind == "single" and c.weights_file]


def _cases() -> list[object]:
    return [
        pytest.param(card, scale, id=f"{card.name}-x{scale}",
                     marks=[pytest.mark.slow] if card.flops_per_output_pixel > SLOW_FLOPS else [])
        for card in _cards() for scale in card.scales
    ]


def test_some_model_is_shipped() -> None:
    assert _cards(), f"no single-image model card in {SHIPPED_WEIGHTS_DIR}"


@pytest.mark.parametrize("card", _cards(), ids=lambda c: c.name)
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
