"""The job stages on their own: inference shapes and padding, alpha, encode, and the metrics against
an offline computation with model_store.metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from model_store.card import Catalog
from model_store.metrics import bicubic_upscale_uint8, lr_consistency_psnr, quality_y
from srserve import imaging
from worker import pipeline


@pytest.fixture(scope="module")
def cache() -> pipeline.DescriptorCache:
    return pipeline.DescriptorCache(Catalog.load(), "cpu")


def test_descriptor_is_loaded_once(cache: pipeline.DescriptorCache) -> None:
    card = cache.catalog.get("bicubic")
    assert cache.get(card, 4) is cache.get(card, 4)
    assert cache.get(card, 2) is not cache.get(card, 4)
    assert ("bicubic", 4) in cache.loaded()


def test_infer_matches_the_offline_bicubic(cache: pipeline.DescriptorCache) -> None:
    rng = np.random.default_rng(1)
    lr = rng.integers(0, 256, size=(21, 17, 3), dtype=np.uint8)
    out = pipeline.infer(cache.get(cache.catalog.get("bicubic"), 3), lr.astype(np.float32) / 255.0)
    assert out.shape == (63, 51, 3) and out.dtype == np.float32
    diff = np.abs(imaging.to_uint8(out).astype(int) - bicubic_upscale_uint8(lr, 3).astype(int))
    assert diff.max() <= 1  # float32 torch vs float64 numpy: at most a rounding step apart


def test_infer_pads_to_the_size_multiple_and_crops_back(cache: pipeline.DescriptorCache) -> None:
    descriptor = dataclasses.replace(cache.get(cache.catalog.get("bicubic"), 2), size_multiple=8)
    out = pipeline.infer(descriptor, np.full((13, 10, 3), 0.5, dtype=np.float32))
    assert out.shape == (26, 20, 3)
    assert np.allclose(out, 0.5, atol=1e-4)


def test_alpha_is_upscaled_and_kept_in_range() -> None:
    alpha = np.zeros((8, 8), dtype=np.float32)
    alpha[:, 4:] = 1.0
    up = pipeline.upscale_alpha(alpha, 4)
    assert up.shape == (32, 32) and up.min() >= 0.0 and up.max() <= 1.0
    assert up[:, :12].max() < 0.05 and up[:, 20:].min() > 0.95


def test_measure_matches_model_store_metrics(data_dir: Path) -> None:
    lr = imaging.load_rgb_uint8(str(data_dir / "eval/Set5/x2/img_002_LR.png"))
    hr = imaging.load_rgb_uint8(str(data_dir / "eval/Set5/x2/img_002_HR.png"))
    out = bicubic_upscale_uint8(lr, 2)
    m = pipeline.measure(out, lr, 2, hr, max_output_pixels=10**9)
    q = quality_y(out, hr, shave=2)
    assert m.psnr_y == pytest.approx(q.psnr_y, abs=1e-3)
    assert m.ssim_y == pytest.approx(q.ssim_y, abs=1e-5)
    assert m.bicubic_psnr_y == pytest.approx(q.psnr_y, abs=1e-3)
    assert m.lr_consistency_psnr == pytest.approx(lr_consistency_psnr(out, lr, 2), abs=1e-3)
    assert m.notes == []


def test_measure_without_reference_and_over_the_limit() -> None:
    lr = np.full((8, 8, 3), 128, dtype=np.uint8)
    out = np.full((16, 16, 3), 128, dtype=np.uint8)
    m = pipeline.measure(out, lr, 2, None, max_output_pixels=10**6)
    assert m.psnr_y is None and m.bicubic_psnr_y is None
    assert m.lr_consistency_psnr == pipeline.PSNR_CAP_DB  # identical: capped, JSON has no infinity
    assert any("identical" in n for n in m.notes)
    skipped = pipeline.measure(out, lr, 2, None, max_output_pixels=100)
    assert skipped.lr_consistency_psnr is None and "skipped" in skipped.notes[0]


def test_decode_failure_has_a_stable_code() -> None:
    with pytest.raises(pipeline.DecodeFailedError) as err:
        pipeline.decode(b"definitely not an image", 10**6)
    assert err.value.code == "decode_failed" and err.value.permanent


def test_resolve_device() -> None:
    import torch

    assert pipeline.resolve_device("cpu") == "cpu"
    assert pipeline.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def _devices() -> list[str]:
    import torch

    return ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", _devices())
def test_infer_on_every_available_device(device: str) -> None:
    cache = pipeline.DescriptorCache(Catalog.load(), device)
    rng = np.random.default_rng(2)
    lr = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    out = pipeline.infer(cache.get(cache.catalog.get("bicubic"), 4), lr.astype(np.float32) / 255.0)
    assert out.shape == (120, 160, 3) and np.isfinite(out).all()
    diff = np.abs(imaging.to_uint8(out).astype(int) - bicubic_upscale_uint8(lr, 4).astype(int))
    assert diff.max() <= 1
