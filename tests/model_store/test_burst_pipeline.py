"""The burst path as a job runs it: card -> descriptor -> registration/rejection -> fusion, through
`worker.burst.run_burst`; shift-and-add must beat bicubic on a real image's burst."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_store.burst.descriptor import load_burst_descriptor
from model_store.burst.synth import BurstConfig, synth_burst
from model_store.card import Catalog
from model_store.data import data_root
from model_store.metrics import bicubic_upscale_uint8, quality_y
from srserve.imaging import load_rgb_uint8, to_uint8
from srserve.schemas import FrameReport
from worker.burst import run_burst
from worker.pipeline import InvalidPayloadError


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    img = load_rgb_uint8(str(data_root() / "eval" / "Set14" / "x4" / "img_003_HR.png"))
    return img[40:232, 60:252]  # 192 x 192: a textured crop, fast on CPU


def _burst(hr: np.ndarray, k: int = 8, outlier: bool = False, seed: int = 11) -> list[np.ndarray]:
    t = torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255.0
    b = synth_burst(t, BurstConfig(frames=k, noise_sigma=2 / 255, outlier_prob=float(outlier)), seed=seed)
    return [f.permute(1, 2, 0).numpy() for f in b.frames[0]]


def test_the_classical_card_is_in_the_catalog_with_frame_limits() -> None:
    card = Catalog.load().get("shift_add")
    assert card.kind == "burst" and card.architecture == "burst_shift_add"
    assert card.min_frames == 2 and card.max_frames == 16 and 4 in card.scales


def test_shift_and_add_beats_bicubic_of_the_reference_frame(hr: np.ndarray) -> None:
    frames = _burst(hr)
    out, reports = run_burst(Catalog.load().get("shift_add"), frames, 4, 0)
    burst_psnr = quality_y(to_uint8(out), hr, shave=4).psnr_y
    bicubic_psnr = quality_y(bicubic_upscale_uint8(to_uint8(frames[0]), 4), hr, shave=4).psnr_y
    assert burst_psnr > bicubic_psnr + 0.5, (burst_psnr, bicubic_psnr)
    assert len(reports) == 8 and not any(r["rejected"] for r in reports)
    assert abs(sum(float(r["weight"]) for r in reports) - 1.0) < 1e-3  # type: ignore[arg-type]
    for r in reports:
        FrameReport.model_validate(r)  # the API's schema accepts what the worker reports


def test_outlier_is_reported_and_costs_little(hr: np.ndarray) -> None:
    card = Catalog.load().get("shift_add")
    clean, _ = run_burst(card, _burst(hr), 4)
    dirty_frames = _burst(hr, outlier=True)
    dirty, reports = run_burst(card, dirty_frames, 4)
    rejected = [r for r in reports if r["rejected"]]
    assert len(rejected) == 1 and rejected[0]["weight"] == 0.0 and rejected[0]["reason"]
    cost = quality_y(to_uint8(clean), hr, 4).psnr_y - quality_y(to_uint8(dirty), hr, 4).psnr_y
    assert cost < 0.5


def test_reference_frame_sets_the_output_grid(hr: np.ndarray) -> None:
    desc = load_burst_descriptor(Catalog.load().get("shift_add"), 4)
    frames = _burst(hr, k=4)
    out0, rep0 = run_burst(desc, frames, 4, 0)
    out2, rep2 = run_burst(desc, frames, 4, 2)
    assert rep2[2]["shift_x"] == 0.0 and rep2[2]["shift_y"] == 0.0 and rep0[0]["shift_x"] == 0.0
    # shifts are relative: frame 0 seen from frame 2 is minus frame 2 seen from frame 0
    assert abs(float(rep2[0]["shift_x"]) + float(rep0[2]["shift_x"])) < 0.1  # type: ignore[arg-type]
    # the output follows the chosen reference: closer to an HR moved like frame 2 than to the unmoved HR
    dy, dx = float(rep0[2]["shift_y"]), float(rep0[2]["shift_x"])  # type: ignore[arg-type]
    if max(abs(dy), abs(dx)) > 0.5:
        d0 = np.abs(out2[16:-16, 16:-16] - out0[16:-16, 16:-16]).mean()
        assert d0 > 0.005


def test_validation_errors(hr: np.ndarray) -> None:
    card = Catalog.load().get("shift_add")
    frames = _burst(hr, k=3)
    with pytest.raises(InvalidPayloadError, match="frames"):
        run_burst(card, frames[:1], 4)
    with pytest.raises(InvalidPayloadError, match="frame 2"):
        run_burst(card, [*frames[:2], frames[2][:-4]], 4)
    with pytest.raises(InvalidPayloadError, match="reference_frame"):
        run_burst(card, frames, 4, 3)
    with pytest.raises(InvalidPayloadError, match="scale"):
        run_burst(card, frames, 8)


def test_tiled_equals_untiled(hr: np.ndarray) -> None:
    card = Catalog.load().get("shift_add")
    frames = torch.from_numpy(np.stack(_burst(hr, k=3))).permute(0, 3, 1, 2)
    whole = load_burst_descriptor(card, 4)(frames).output
    tiled_desc = load_burst_descriptor(card, 4, tile_pixels=32 * 32)
    assert len(tiled_desc.plan_for(48, 48, 2.0).tiles) > 1
    tiled = tiled_desc(frames).output
    # tiles carry receptive field + largest shift of context, so the seams do not show
    assert float((whole - tiled).abs().max()) < 1e-3
