"""Burst synthesiser: determinism, geometry (shifts mean what the registration and fusion assume),
noise, outliers, and the separable forward operator used by back-projection."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from model_store.burst.fusion import shift_downsample_matrices
from model_store.burst.synth import BurstConfig, degrade_shifted, synth_burst, synth_burst_np
from model_store.data import data_root
from srserve.imaging import load_rgb_uint8


@pytest.fixture(scope="module")
def hr() -> torch.Tensor:
    img = load_rgb_uint8(str(data_root() / "eval" / "Set14" / "x4" / "img_005_HR.png"))[:128, :160]
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


def test_same_seed_same_burst_and_different_seed_differs(hr: torch.Tensor) -> None:
    cfg = BurstConfig(frames=5, shot_noise=0.001, gain_range=0.1, outlier_prob=0.5)
    a = synth_burst(hr, cfg, seed=7)
    b = synth_burst(hr, cfg, seed=7)
    c = synth_burst(hr, cfg, seed=8)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.shifts, b.shifts) and torch.equal(a.gains, b.gains)
    assert not torch.equal(a.frames, c.frames)
    assert not torch.allclose(a.shifts, c.shifts)


def test_shapes_ranges_and_reference_frame(hr: torch.Tensor) -> None:
    cfg = BurstConfig(frames=6, scale=4, max_shift=1.5, gain_range=0.2)
    burst = synth_burst(hr, cfg, seed=1)
    assert burst.frames.shape == (1, 6, 3, 32, 40)
    assert burst.shifts.shape == (1, 6, 2)
    assert torch.all(burst.shifts[:, 0] == 0) and float(burst.gains[0, 0]) == 1.0
    assert float(burst.shifts.abs().max()) <= 1.5
    assert float(burst.frames.min()) >= 0.0 and float(burst.frames.max()) <= 1.0
    # 8-bit quantised like a camera's output
    assert torch.allclose(burst.frames * 255, torch.round(burst.frames * 255), atol=1e-4)
    assert float((burst.gains - 1).abs().max()) <= 0.2 + 1e-6


def test_frames_follow_the_shift_convention(hr: torch.Tensor) -> None:
    """Without noise, frame k is exactly degrade_shifted(HR, shift_k): frame_k(p) = ref(p - shift_k)."""
    cfg = BurstConfig(frames=4, noise_sigma=0.0, quantize=False)
    burst = synth_burst(hr, cfg, seed=3)
    expected = degrade_shifted(hr.expand(4, -1, -1, -1), burst.shifts[0], 4)
    assert torch.allclose(burst.frames[0], expected.clamp(0, 1), atol=1e-4)
    # an integer LR shift of (1, 0) moves the content one LR row down
    moved = degrade_shifted(hr, torch.tensor([[1.0, 0.0]]), 4)
    ref = degrade_shifted(hr, torch.zeros(1, 2), 4)
    assert torch.allclose(moved[..., 3:-3, 3:-3], ref[..., 2:-4, 3:-3], atol=1e-4)


def test_noise_level_matches_sigma(hr: torch.Tensor) -> None:
    clean = synth_burst(hr, BurstConfig(frames=3, noise_sigma=0.0, quantize=False), seed=2).frames
    noisy = synth_burst(hr, BurstConfig(frames=3, noise_sigma=0.02, quantize=False), seed=2).frames
    inner = (noisy - clean)[..., 2:-2, 2:-2]
    assert 0.017 < float(inner.std()) < 0.023


def test_outlier_frame_is_flagged_and_never_the_reference(hr: torch.Tensor) -> None:
    cfg = BurstConfig(frames=5, outlier_prob=1.0)
    hits = [synth_burst(hr, cfg, seed=s).outlier[0] for s in range(6)]
    for h in hits:
        assert int(h.sum()) == 1 and not bool(h[0])


def test_numpy_front_end_matches_torch(hr: torch.Tensor) -> None:
    img = (hr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    frames, shifts = synth_burst_np(img, BurstConfig(frames=3), seed=4)
    burst = synth_burst(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0, BurstConfig(frames=3), seed=4)
    assert len(frames) == 3 and frames[0].shape == (32, 40, 3)
    np.testing.assert_allclose(frames[1], burst.frames[0, 1].permute(1, 2, 0).numpy(), atol=1e-6)
    np.testing.assert_allclose(shifts, burst.shifts[0].numpy())


def test_separable_operator_equals_warp_and_downsample(hr: torch.Tensor) -> None:
    d = torch.tensor([[0.3, -1.2], [1.7, 0.45]])
    expected = degrade_shifted(hr.expand(2, -1, -1, -1), d, 4)
    a_y = shift_downsample_matrices(128, 4, d[:, 0])
    a_x = shift_downsample_matrices(160, 4, d[:, 1])
    got = torch.einsum("kiy,cyx,kjx->kcij", a_y, hr[0], a_x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_matrix_warp_is_the_same_degradation() -> None:
    # training's fast path (separable matrices) against the reference warp + resize, outliers included
    hr = torch.rand(3, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    cfg = BurstConfig(frames=6, scale=4, noise_sigma=0.0, quantize=False, gain_range=0.1, outlier_prob=1.0)
    ref = synth_burst(hr, cfg, seed=9)
    fast = synth_burst(hr, dataclasses.replace(cfg, matrix_warp=True), seed=9)
    assert torch.equal(ref.shifts, fast.shifts) and torch.equal(ref.outlier, fast.outlier)
    assert float((ref.frames - fast.frames).abs().max()) < 1e-4
