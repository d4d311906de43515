"""`srserve compare`: the side-by-side figure and its table, on a real Set5 image with shipped weights."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_store.compare import Crop, most_textured_crop, write_comparison
from model_store.data import data_root
from srserve.cli import main as cli_main


def test_most_textured_crop_finds_the_textured_patch() -> None:
    rng = np.random.default_rng(0)
    img = np.full((128, 160, 3), 120, np.uint8)
    img[64:96, 96:128] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    crop = most_textured_crop(img, 32)
    assert crop == Crop(96, 64, 32)
    with pytest.raises(ValueError, match="does not fit"):
        most_textured_crop(img, 200)


def test_compare_figure_and_table(tmp_path: Path) -> None:
    out = tmp_path / "fig.png"
    assert cli_main(["compare", "--models", "bicubic,fsrcnn_x2", "--dataset", "Set5", "--image", "img_003",
                     "--scale", "2", "--crop", "64", "--at", "100,40", "--zoom", "2", "--out", str(out)]) == 0
    figure = np.asarray(Image.open(out))
    # overview + 2 models + HR, each 64*2 px wide with 8 px gaps; the crop row is 128 px tall + captions
    assert figure.shape[1] == 4 * (128 + 8) + 8
    assert figure.shape[0] > 128 + 16
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^\| ([^|]+?) \| ([\d.]*) \| ([\d.]*) \| ([\d.]+) \| ([\d.]+) \|$", out.with_suffix(".md").read_text(), re.M)}
    assert set(rows) == {"bicubic", "fsrcnn_x2", "HR (ground truth)"}
    bicubic, fsrcnn, hr = rows["bicubic"], rows["fsrcnn_x2"], rows["HR (ground truth)"]
    assert float(fsrcnn[0]) > float(bicubic[0]) + 1.0  # the trained model is visibly better on butterfly
    assert hr[0] == "" and hr[1] == ""  # no PSNR of the ground truth against itself
    assert float(hr[3]) > float(fsrcnn[3]) > float(bicubic[3])  # texture: HR > SR > bicubic
    # the HR panel is the HR crop itself, pixel for pixel (nearest-neighbour zoom)
    hr_img = np.asarray(Image.open(data_root() / "eval/Set5/x2/img_003_HR.png").convert("RGB"))
    left = 8 + 3 * (128 + 8)
    np.testing.assert_array_equal(figure[8:8 + 128:2, left:left + 128:2], hr_img[40:104, 100:164])


def test_compare_refuses_unknown_image_and_bad_crop(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no image 'nope'.*img_001"):
        write_comparison(["bicubic"], dataset="Set5", image="nope", scale=2, out=tmp_path / "a.png")
    with pytest.raises(ValueError, match="does not fit"):
        write_comparison(["bicubic"], dataset="Set5", image="img_003", scale=2, out=tmp_path / "a.png",
                         crop_size=64, crop_at=(250, 0))
    assert not (tmp_path / "a.png").exists()


def test_cli_reports_a_wrong_argument_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["compare", "--models", "nope_x9", "--image", "img_001", "--scale", "2",
                     "--dataset", "Set5", "--out", "/tmp/unused.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("srserve compare: error: unknown model 'nope_x9'; valid: ")
    assert "fsrcnn_x2" in err and "Traceback" not in err
