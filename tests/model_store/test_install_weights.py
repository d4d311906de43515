"""Trained weights replace shipped ones only where they measure better (no silent regressions)."""

from __future__ import annotations

import shutil
from pathlib import Path

from model_store.card import SHIPPED_WEIGHTS_DIR, EvalResult, ModelCard
from model_store.install_weights import install


def _card_with_psnr(card: ModelCard, delta: float, name: str | None = None) -> ModelCard:
    results = [EvalResult(**{**r.model_dump(), "psnr_y": r.psnr_y + delta}) for r in card.results]
    return card.model_copy(update={"results": results, **({"name": name} if name else {})})


def _write(folder: Path, card: ModelCard, weights: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, folder / card.weights_file)
    (folder / f"{card.name}.json").write_text(card.model_dump_json(indent=2))


def test_only_better_candidates_replace_the_shipped_card(tmp_path: Path) -> None:
    shipped = ModelCard.model_validate_json((SHIPPED_WEIGHTS_DIR / "espcn_x2.json").read_text())
    weights = SHIPPED_WEIGHTS_DIR / "espcn_x2.safetensors"
    target = tmp_path / "weights"
    _write(target, shipped, weights)
    worse = tmp_path / "worse"
    _write(worse, _card_with_psnr(shipped, -0.1), weights)
    [decision] = install(worse, target)
    assert not decision.install and "not better" in decision.reason
    assert ModelCard.model_validate_json((target / "espcn_x2.json").read_text()) == shipped

    better = tmp_path / "better"
    _write(better, _card_with_psnr(shipped, +0.1), weights)
    assert install(better, target, dry_run=True)[0].install
    assert ModelCard.model_validate_json((target / "espcn_x2.json").read_text()) == shipped  # dry run
    [decision] = install(better, target)
    assert decision.install
    installed = ModelCard.model_validate_json((target / "espcn_x2.json").read_text())
    assert installed.set5_psnr(2) == shipped.set5_psnr(2) + 0.1  # type: ignore[operator]


def test_new_names_install_and_corrupt_weights_are_refused(tmp_path: Path) -> None:
    shipped = ModelCard.model_validate_json((SHIPPED_WEIGHTS_DIR / "espcn_x2.json").read_text())
    weights = SHIPPED_WEIGHTS_DIR / "espcn_x2.safetensors"
    source, target = tmp_path / "run", tmp_path / "weights"
    target.mkdir()
    fresh = shipped.model_copy(update={"name": "espcn_fresh_x2", "weights_file": "espcn_fresh_x2.safetensors"})
    _write(source, fresh, weights)
    [decision] = install(source, target)
    assert decision.install and (target / "espcn_fresh_x2.safetensors").is_file()

    broken = tmp_path / "broken"
    _write(broken, _card_with_psnr(shipped, +1.0), weights)
    (broken / "espcn_x2.safetensors").write_bytes(b"\0" * 64)
    [decision] = install(broken, target)
    assert not decision.install and "sha256" in decision.reason
    assert not (target / "espcn_x2.safetensors").exists()
