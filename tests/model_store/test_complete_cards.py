"""Cards completed after training: a set missing at training time is skipped there and measured later
by `model_store.complete_cards`, through the same evaluation path, with the shortfall note rewritten."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from model_store.card import SHIPPED_WEIGHTS_DIR, EvalResult, ModelCard, shortfall_note, with_shortfall_note
from model_store.complete_cards import complete_card, main, missing_cells
from model_store.data import data_root
from model_store.train import TrainConfig, Trainer


def _row(dataset: str, psnr: float, paper: float | None) -> EvalResult:
    return EvalResult(dataset=dataset, scale=4, psnr_y=psnr, ssim_y=0.8, paper_psnr_y=paper)


def test_shortfall_note_is_rewritten_and_other_notes_kept() -> None:
    rows = [_row("Set5", 30.0, 30.72), _row("Set14", 28.0, 27.61), _row("BSD100", 26.5, None)]
    note = shortfall_note(rows, "espcn")
    assert note == ("Below the paper: Set5 x4 -0.72 dB. The paper trained on ImageNet (50,000 images), these "
                    "weights on T91 + SunHays80 (171 images): more steps (a GPU run) would narrow the gap; "
                    "closing it may take more data.")
    assert shortfall_note(rows, "bicubic").startswith("Below the paper: Set5 x4 -0.72 dB. These weights on T91")
    legacy = "Below the paper: Set5 x4 -1.00 dB. More iterations (GPU) would close most of it. Trained on CPU."
    for old in (legacy, shortfall_note([_row("Set5", 29.0, 30.72)], "espcn") + " Trained on CPU."):
        assert with_shortfall_note(old, rows, "espcn") == note + " Trained on CPU."
        assert with_shortfall_note(old, rows[1:], "espcn") == "Trained on CPU."  # nothing below the paper any more
    assert with_shortfall_note("", rows[1:], "espcn") == ""


def test_a_removed_cell_is_measured_back_exactly(tmp_path: Path) -> None:
    shipped = ModelCard.model_validate_json((SHIPPED_WEIGHTS_DIR / "fsrcnn_x4.json").read_text())
    set14 = shipped.result("Set14", 4)
    assert set14 is not None and set14.lr_consistency_psnr is not None
    stripped = shipped.model_copy(update={"results": [r for r in shipped.results if r != set14], "notes": ""})
    shutil.copy(SHIPPED_WEIGHTS_DIR / "fsrcnn_x4.safetensors", tmp_path)
    (tmp_path / "fsrcnn_x4.json").write_text(stripped.model_dump_json(indent=2))
    assert missing_cells(stripped, ["Set5", "Set14"]) == [("Set14", 4)]

    completed = complete_card(tmp_path / "fsrcnn_x4.json", ["Set5", "Set14"])
    assert completed == ModelCard.model_validate_json((tmp_path / "fsrcnn_x4.json").read_text())
    again = completed.result("Set14", 4)
    assert again is not None
    assert again.psnr_y == pytest.approx(set14.psnr_y, abs=1e-3)
    assert again.ssim_y == pytest.approx(set14.ssim_y, abs=1e-4)
    assert again.lr_consistency_psnr == pytest.approx(set14.lr_consistency_psnr, abs=1e-2)
    assert again.paper_psnr_y == set14.paper_psnr_y == 27.61
    assert [(r.dataset, r.scale) for r in completed.results] == [(r.dataset, r.scale) for r in shipped.results]
    # the note is rebuilt from the measured cells, and the cell measured back gives the shipped note again
    assert completed.notes == shortfall_note(completed.results, "fsrcnn") == shipped.notes
    assert completed.weights_sha256 == shipped.weights_sha256


def test_training_skips_a_missing_set_then_the_card_is_completed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    data = data_root() / "train" / "T91"
    cfg = TrainConfig.model_validate(dict(
        arch="fsrcnn", scale=3, iters=4, batch=2, patch=24, lr=1e-3, loss="l1", data=[data], out=tmp_path,
        eval_every=0,
        arch_args={"d": 8, "s": 4, "m": 1}, eval_sets=["Set5", "NoSuchSet"], device="cpu", command="test"))
    trainer = Trainer(cfg)
    trainer.fit()
    with caplog.at_level(logging.WARNING, logger="model_store.train"):
        card = trainer.finish()
    assert [(r.dataset, r.scale) for r in card.results] == [("Set5", 3)]  # the run's outputs survive
    assert "NoSuchSet not evaluated" in caplog.text

    assert main([str(tmp_path), "--sets", "Set5", "Set14"]) == 0
    assert "| fsrcnn_x3 | Set14 x3 " in capsys.readouterr().out
    completed = ModelCard.model_validate_json((tmp_path / "fsrcnn_x3.json").read_text())
    assert [(r.dataset, r.scale) for r in completed.results] == [("Set5", 3), ("Set14", 3)]
    assert "Set14 x3" in completed.notes  # a 4-step model is below the paper everywhere
