"""`srserve eval-burst` / `srserve train-burst` reach the burst modules' CLIs; the table function
reports what the bursts measured."""

from __future__ import annotations

import pytest

from model_store.burst.evaluate_burst import burst_tables
from srserve.cli import build_parser, main


def test_burst_commands_are_registered() -> None:
    parser = build_parser()
    args = parser.parse_args(["train-burst", "--arch", "shift_pool", "--help"])
    assert args.args == ["--arch", "shift_pool", "--help"]  # forwarded untouched to train_burst
    assert parser.parse_args(["eval-burst"]).handler is not None


def test_eval_burst_cli_prints_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-burst", "--models", "bicubic,shift_add", "--sets", "Set5", "--limit", "1", "--frames", "2",
                 "--k-table", "", "--no-outlier"]) == 0
    out = capsys.readouterr().out
    assert "| bicubic (reference frame only) |" in out and "| shift_add |" in out


def test_tables_measure_more_frames_and_outliers() -> None:
    text, scores = burst_tables(["bicubic", "shift_add"], ["Set5"], frames=4, k_table=[1, 4], limit=2)
    by = {(s.model, s.frames, s.outlier): s for s in scores}
    assert by[("shift_add", 4, False)].psnr_y > by[("bicubic", 1, False)].psnr_y
    assert by[("shift_add", 4, False)].psnr_y > by[("shift_add", 1, False)].psnr_y
    dirty = by[("shift_add", 4, True)]
    assert dirty.rejected_outliers == 2 and dirty.rejected_inliers == 0
    assert "One outlier frame among K = 4" in text and "K=1 | K=4" in text
