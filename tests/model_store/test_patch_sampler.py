"""The on-device patch sampler and its scale augmentation, on real training images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_store.data import PatchSampler, data_root, downscaled_copies
from model_store.metrics import high_frequency_energy
from model_store.resize import imresize
from srserve.imaging import load_rgb_uint8


def test_downscaled_copies_are_the_matlab_resize_rounded_and_pack_more_detail_per_pixel() -> None:
    photo = load_rgb_uint8(str(sorted((data_root() / "train" / "SunHays80").iterdir())[0]))
    h, w = photo.shape[:2]
    copies = downscaled_copies(photo, [0.8, 0.6])
    assert [c.shape for c in copies] == [(int(np.ceil(h * f)), int(np.ceil(w * f)), 3) for f in (0.8, 0.6)]
    assert all(c.dtype == np.uint8 for c in copies)
    expected = np.clip(np.rint(imresize(photo.astype(np.float32) / 255.0, scale=0.6) * 255.0), 0, 255)
    np.testing.assert_array_equal(copies[1], expected.astype(np.uint8))
    # the point of the augmentation: shrunk photos look more like the small, dense benchmark images (a noisy
    # photo can lose detail per pixel when shrunk, so the median over several)
    photos = [load_rgb_uint8(str(p)) for p in sorted((data_root() / "train" / "SunHays80").iterdir())[:6]]
    ratios = [high_frequency_energy(downscaled_copies(p, [0.6])[0]) / high_frequency_energy(p) for p in photos]
    assert float(np.median(ratios)) > 1.1


def test_the_sampler_pools_the_shrunk_copies_and_crops_only_where_a_patch_fits(tiny_data: Path) -> None:
    sampler = PatchSampler([tiny_data], torch.device("cpu"), seed=0, downscales=[0.75, 0.5])
    assert sampler.n_images == 3
    assert sampler.heights.tolist() == sampler.widths.tolist() == [64, 48, 32]
    original = load_rgb_uint8(str(tiny_data / "crop.png"))
    shrunk = torch.from_numpy(downscaled_copies(original, [0.75])[0]).permute(2, 0, 1)
    patches = sampler.sample(4000, 48, augment=False)
    # 17² crops of the original and exactly one of the 48² copy; the 32² copy is too small to be drawn
    whole_copy = (patches == shrunk).flatten(1).all(dim=1)
    assert 0 < int(whole_copy.sum()) < 60
    crops_of_original = {
        np.ascontiguousarray(original[y : y + 48, x : x + 48].transpose(2, 0, 1)).tobytes()
        for y in range(17) for x in range(17)
    }
    assert all(patch.numpy().tobytes() in crops_of_original for patch in patches[~whole_copy])


def test_scale_augmentation_factors_must_shrink(tiny_data: Path) -> None:
    for bad in ([1.0], [0.5, 1.5], [0.0]):
        with pytest.raises(ValueError, match="must lie in"):
            PatchSampler([tiny_data], torch.device("cpu"), seed=0, downscales=bad)
