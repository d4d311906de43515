"""`srserve eval`: JSON shape, per-image values, self-ensemble, dataset resolution."""

from __future__ import annotations

import argparse
import json

import pytest

from model_store.data import data_root, resolve_eval_pairs
from srserve.commands import eval as eval_cmd


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    eval_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv])
    return int(args.handler(args))


def test_eval_json_on_a_folder(capsys: pytest.CaptureFixture[str]) -> None:
    folder = data_root() / "eval" / "Set5" / "x4"
    assert _run(["--model", "bicubic", "--scale", "4", "--dataset", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"model", "scale", "dataset", "n_images", "psnr_y", "ssim_y", "per_image"}
    assert out["model"] == "bicubic" and out["scale"] == 4 and out["dataset"] == "Set5" and out["n_images"] == 5
    assert abs(out["psnr_y"] - 28.42) < 0.15
    assert [p["image"] for p in out["per_image"]] == [f"img_00{i}" for i in range(1, 6)]
    assert out["psnr_y"] == pytest.approx(sum(p["psnr_y"] for p in out["per_image"]) / 5, abs=1e-3)


def test_self_ensemble_of_bicubic_stays_close(capsys: pytest.CaptureFixture[str]) -> None:
    _run(["--model", "bicubic", "--scale", "3", "--dataset", "Set5", "--json", "--self-ensemble"])
    out = json.loads(capsys.readouterr().out)
    assert abs(out["psnr_y"] - 30.39) < 0.2


def test_x8_pairs_are_synthesised_from_x4() -> None:
    name, pairs = resolve_eval_pairs("Set5", 8)
    assert name == "Set5" and len(pairs) == 5
    for p in pairs:
        assert p.hr.shape[0] == 8 * p.lr.shape[0] and p.hr.shape[1] == 8 * p.lr.shape[1]
    with pytest.raises(FileNotFoundError):
        resolve_eval_pairs("NoSuchSet", 4)
