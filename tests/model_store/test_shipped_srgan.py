"""The shipped SRGAN against the shipped SRResNet (it was fine-tuned from an earlier state of it), on Set5 x4:
the GAN's output carries measurably more high-frequency energy (the texture it is trained to add), while its
LR-consistency stays above the documented floor (`LR_CONSISTENCY_FLOOR_DB`): it still explains its input."""

from __future__ import annotations

import numpy as np
import pytest

from model_store.card import Catalog
from model_store.data import benchmark_pairs
from model_store.evaluate import super_resolve
from model_store.metrics import high_frequency_energy, lr_consistency_psnr
from model_store.registry import load_descriptor
from model_store.train_gan import LR_CONSISTENCY_FLOOR_DB

# SRGAN over SRResNet in mean Set5 high-frequency energy: well clear of run-to-run noise (which is zero
# here: inference is deterministic) and of what a PSNR-trained network's sharpening could give.
MIN_TEXTURE_GAIN = 1.3


@pytest.fixture(scope="module")
def set5_outputs() -> dict[str, list[np.ndarray]]:
    catalog = Catalog.load()
    pairs = list(benchmark_pairs("Set5", 4))
    outputs: dict[str, list[np.ndarray]] = {"lr": [p.lr for p in pairs], "hr": [p.hr for p in pairs]}
    for name in ("srresnet_x4", "srgan_x4"):
        desc = load_descriptor(catalog.resolve(name, 4), 4, catalog=catalog)
        outputs[name] = [super_resolve(desc, p.lr) for p in pairs]
    return outputs


def _mean_energy(images: list[np.ndarray]) -> float:
    return float(np.mean([high_frequency_energy(img) for img in images]))


def test_srgan_adds_high_frequency_energy_over_srresnet(set5_outputs: dict[str, list[np.ndarray]]) -> None:
    srgan, srresnet = _mean_energy(set5_outputs["srgan_x4"]), _mean_energy(set5_outputs["srresnet_x4"])
    assert srgan > MIN_TEXTURE_GAIN * srresnet, (srgan, srresnet, _mean_energy(set5_outputs["hr"]))


def test_srgan_lr_consistency_stays_above_the_documented_floor(set5_outputs: dict[str, list[np.ndarray]]) -> None:
    scores = [lr_consistency_psnr(sr, lr, 4) for sr, lr in zip(set5_outputs["srgan_x4"], set5_outputs["lr"],
                                                                  strict=True)]
    assert float(np.mean(scores)) >= LR_CONSISTENCY_FLOOR_DB, scores
