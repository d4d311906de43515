"""SRGAN fine-tuning on CPU, smoke-sized: losses, resumable checkpoint, weights + card that load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from model_store.card import Catalog
from model_store.metrics import high_frequency_energy
from model_store.registry import create_model, load_descriptor
from model_store.train_gan import GanConfig, relativistic_losses, train_srgan

TINY = {"num_feat": 8, "num_block": 1}


def test_relativistic_losses_reward_the_right_side() -> None:
    real, fake = torch.full((4,), 5.0), torch.full((4,), -5.0)
    d_loss, g_loss = relativistic_losses(real, fake)
    assert d_loss < 0.01  # the discriminator separates them
    assert g_loss > 5.0  # so the generator is far from fooling it
    d_eq, g_eq = relativistic_losses(torch.zeros(4), torch.zeros(4))
    assert d_eq == pytest.approx(np.log(2), abs=1e-6) and g_eq == pytest.approx(np.log(2), abs=1e-6)


def test_high_frequency_energy_orders_textures() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((32, 32, 3), 128, np.uint8)
    noisy = np.clip(128 + 25.5 * rng.standard_normal((32, 32, 3)), 0, 255).astype(np.uint8)
    assert high_frequency_energy(flat) == 0.0
    assert high_frequency_energy(noisy) > 100.0
    # a known value: one pixel of luma 10 on black: Laplacian -40 there, +10 at its 4 neighbours, 0 at
    # the 4 corners of the 3x3 interior
    spike = np.zeros((5, 5, 3), np.float64)
    spike[2, 2] = 10.0
    assert high_frequency_energy(spike) == pytest.approx((4 * 10.0**2 + 40.0**2) / 9)


@pytest.fixture()
def tiny_setup(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        img = (rng.random((64, 72, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(data / f"img{i}.png")
    torch.manual_seed(0)
    init = tmp_path / "init.safetensors"
    save_file(create_model("srresnet", scale=4, **TINY).state_dict(), str(init))
    return data, init


def test_train_srgan_writes_loadable_model_and_resumes(tiny_setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, init = tiny_setup
    out = tmp_path / "out"
    cfg = GanConfig(
        name="srgan_tiny_x4",
        init=str(init),
        arch_args=TINY,
        iterations=1,
        batch_size=2,
        patch_size=32,
        disc_num_feat=8,
        d_warmup=1,  # iteration 1 trains only D, the resumed iteration 2 also G
        device="cpu",
        precision="fp32",
        train_dirs=[data],
        out_dir=out,
        eval_sets=[],
        log_every=1,
    )
    card = train_srgan(cfg)
    assert (out / "srgan_tiny_x4.safetensors").is_file() and (out / "srgan_tiny_x4.json").is_file()
    assert card.training is not None and card.training.iterations == 1
    assert card.family == "srgan" and card.architecture == "srresnet"

    # the checkpoint is safetensors: tensors of both networks and both optimisers, counters as metadata
    with safe_open(str(out / "srgan_tiny_x4.ckpt.safetensors"), "pt") as f:
        assert f.metadata()["iteration"] == "1"
        prefixes = {key.split(".")[0] for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    # (the generator's optimiser has state only once the generator has taken a step)
    assert {"generator", "discriminator", "opt_d", "rng"} <= prefixes <= {"generator", "discriminator", "opt_g",
                                                                          "opt_d", "rng"}

    card2 = train_srgan(cfg.model_copy(update={"iterations": 2, "eval_sets": ["Set5"]}))
    assert card2.training is not None and card2.training.iterations == 2  # resumed, not restarted
    assert card2.training.wall_time_s >= card.training.wall_time_s
    [set5] = card2.results
    assert set5.dataset == "Set5" and set5.lr_consistency_psnr is not None and set5.paper_psnr_y == 29.40
    assert "high-frequency energy" in card2.notes

    catalog = Catalog.load([out])
    desc = load_descriptor(catalog.get("srgan_tiny_x4"), 4, catalog=catalog)
    y = desc(torch.rand(1, 3, 10, 12))
    assert y.shape == (1, 3, 40, 48)
    # fine-tuning moved the generator away from its initialisation
    base = create_model("srresnet", scale=4, **TINY)
    from safetensors.torch import load_file

    base.load_state_dict(load_file(str(init)))
    moved = any(not torch.equal(p, q) for p, q in zip(base.parameters(), desc.module.parameters(), strict=True))
    assert moved


@pytest.mark.parametrize("native_bf16", [False, True])
def test_bf16_on_a_cpu_only_where_the_cpu_runs_it_natively(
    native_bf16: bool, tiny_setup: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("model_store.train_gan.cpu_trains_faster_in_bf16", lambda: native_bf16)
    data, init = tiny_setup
    cfg = GanConfig(name="srgan_tiny_x4", init=str(init), arch_args=TINY, iterations=2, batch_size=2, patch_size=32,
                    disc_num_feat=8, d_warmup=1, device="cpu", precision="bf16", train_dirs=[data],
                    out_dir=tmp_path, eval_sets=[])
    card = train_srgan(cfg)
    assert card.training is not None and card.training.precision == ("bf16 autocast" if native_bf16 else "fp32")
