"""Registration: sub-pixel accuracy on known synthetic shifts, and outlier rejection."""

from __future__ import annotations

import pytest
import torch

from model_store.burst.registration import estimate_shifts, register_burst, register_burst_np
from model_store.burst.synth import BurstConfig, synth_burst
from model_store.data import data_root
from srserve.imaging import load_rgb_uint8


def _hr(name: str) -> torch.Tensor:
    img = load_rgb_uint8(str(data_root() / "eval" / "Set14" / "x4" / f"{name}_HR.png"))
    img = img[: img.shape[0] // 4 * 4, : img.shape[1] // 4 * 4]
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


@pytest.mark.parametrize(("name", "seed"), [("img_001", 0), ("img_005", 1), ("img_010", 2)])
def test_recovers_known_shifts_within_a_tenth_of_an_lr_pixel(name: str, seed: int) -> None:
    burst = synth_burst(_hr(name), BurstConfig(frames=8, max_shift=2.0, noise_sigma=2 / 255), seed=seed)
    reg = register_burst(burst.frames)
    err = (reg.shifts - burst.shifts).abs()
    assert float(err.max()) < 0.1, err
    assert not bool(reg.rejected.any())
    assert float(reg.confidence.min()) > 0.9


def test_integer_and_negative_shifts_have_the_right_sign() -> None:
    g = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0))
    g = torch.nn.functional.avg_pool2d(g[None], 3, 1, 1)[0]
    moved = torch.roll(g, shifts=(3, -5), dims=(-2, -1))  # moved(p) = g(p - (3, -5))
    d = estimate_shifts(g, moved)
    assert torch.allclose(d, torch.tensor([[3.0, -5.0]], dtype=d.dtype), atol=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])  # covers both outlier types (unrelated content, misaligned)
def test_outlier_frame_is_rejected_and_good_frames_kept(seed: int) -> None:
    burst = synth_burst(_hr("img_003"), BurstConfig(frames=8, outlier_prob=1.0), seed=seed)
    reg = register_burst(burst.frames)
    assert torch.equal(reg.rejected, burst.outlier)
    j = int(torch.nonzero(burst.outlier[0])[0, 0])
    assert reg.reasons[0][j] is not None and reg.reasons[0][0] is None


def test_numpy_front_end() -> None:
    burst = synth_burst(_hr("img_002"), BurstConfig(frames=3), seed=5)
    frames = [f.permute(1, 2, 0).numpy() for f in burst.frames[0]]
    reg = register_burst_np(frames)
    assert float((reg.shifts - burst.shifts).abs().max()) < 0.1
