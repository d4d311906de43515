"""Burst training: the self-supervised loss learns on a tiny run; the CLI writes weights + a card that
the catalog and the burst descriptor load."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from model_store.burst.descriptor import load_burst_descriptor
from model_store.burst.train_burst import BurstTrainer, build_parser, main
from model_store.card import Catalog, ModelCard
from model_store.data import data_root

TINY = ["--scale", "4", "--frames", "4", "--batch", "2", "--patch", "16", "--device", "cpu",
        "--eval-sets", "", "--eval-limit", "1", "--eval-every", "100000"]


@pytest.fixture(scope="module")
def few_images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two training photos: loading all of ../shared/data/train takes most of a CPU test's time."""
    folder = tmp_path_factory.mktemp("train")
    for name in ("img_001.png", "img_002.png"):
        shutil.copy(data_root() / "train" / "SunHays80" / name, folder / name)
    return ["--data", str(folder)]


def test_self_supervised_loss_decreases(tmp_path: Path, few_images: list[str]) -> None:
    torch.manual_seed(0)
    tiny_net = '{"enc_features": 8, "enc_blocks": 1, "body_features": 16, "body_blocks": 1}'
    args = build_parser().parse_args(["--arch", "shift_pool", "--supervision", "self", "--out", str(tmp_path),
                                      "--lr", "1e-3", "--arch-args", tiny_net, *TINY, *few_images])
    trainer = BurstTrainer(args)
    fixed = trainer._burst()  # one fixed batch and target frame: the loss must go down when fitting it
    losses = []
    for _ in range(20):
        loss = trainer._loss(fixed, held_out=2)
        trainer.opt.zero_grad()
        loss.backward()
        trainer.opt.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    # the start is the classical shift-and-add (zero-initialised residual) and sensor noise sets a floor
    assert sum(losses[-4:]) / 4 < 0.95 * sum(losses[:4]) / 4, losses


def test_cli_writes_a_loadable_burst_card(tmp_path: Path, few_images: list[str]) -> None:
    assert main(["--arch", "misr_gru", "--supervision", "supervised", "--out", str(tmp_path), "--iters", "2",
                 "--arch-args", '{"features": 8}', "--name", "tiny_gru_x4", *TINY, *few_images]) == 0
    card = ModelCard.model_validate(json.loads((tmp_path / "tiny_gru_x4.json").read_text()))
    assert card.kind == "burst" and card.min_frames == 2 and card.max_frames == 16
    assert card.arch_args["features"] == 8 and card.arch_args["enc_blocks"] == 2  # defaults recorded too
    assert card.training is not None and card.training.iterations == 2
    catalog = Catalog.load([tmp_path])
    assert catalog.resolve("tiny_gru_x4", 4, kind="burst").family == "misr_gru"
    desc = load_burst_descriptor(catalog.get("tiny_gru_x4"), 4, catalog=catalog)
    out = desc(torch.rand(3, 3, 16, 16)).output
    assert out.shape == (3, 64, 64) and torch.isfinite(out).all()
    # resumable: a checkpoint exists and a resumed run continues the step count
    assert (tmp_path / "tiny_gru_x4.ckpt.safetensors").is_file()
    assert main(["--arch", "misr_gru", "--supervision", "supervised", "--out", str(tmp_path), "--iters", "3",
                 "--arch-args", '{"features": 8}', "--name", "tiny_gru_x4", "--resume", *TINY, *few_images]) == 0
    card = ModelCard.model_validate(json.loads((tmp_path / "tiny_gru_x4.json").read_text()))
    assert card.training is not None and card.training.iterations == 3


def test_init_continues_from_trained_weights_and_counts_their_training(tmp_path: Path, few_images: list[str]) -> None:
    tiny_net = ["--arch-args", '{"enc_features": 8, "enc_blocks": 1, "body_features": 16, "body_blocks": 1}']
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["--arch", "shift_pool", "--out", str(first), "--iters", "2", "--name", "tiny_pool_x4",
                 *tiny_net, *TINY, *few_images]) == 0
    weights = first / "tiny_pool_x4.safetensors"
    args = build_parser().parse_args(["--arch", "shift_pool", "--out", str(second), "--iters", "1", "--name",
                                      "tiny_pool_x4", "--init", str(weights), *tiny_net, *TINY, *few_images])
    trainer = BurstTrainer(args)
    from safetensors.torch import load_file

    start = load_file(str(weights))
    assert all(torch.equal(v, start[k]) for k, v in trainer.module.state_dict().items())
    assert main(["--arch", "shift_pool", "--out", str(second), "--iters", "1", "--name", "tiny_pool_x4",
                 "--init", str(weights), *tiny_net, *TINY, *few_images]) == 0
    card = ModelCard.model_validate(json.loads((second / "tiny_pool_x4.json").read_text()))
    assert card.training is not None
    # the --init weights are measured first (step 0): the shipped ones are the best of steps 0 and 1
    best = re.search(r"\(step (\d) of 1\); this run \([-\d]+\): 1 steps", card.training.notes)
    assert best is not None and card.training.iterations == 2 + int(best[1])  # 2 inherited + those here
    assert "continued from tiny_pool_x4" in card.training.notes and "Set5 bursts " in card.training.notes
    # weights of another shape are refused by name, before any training
    other = build_parser().parse_args(["--arch", "shift_pool", "--out", str(second), "--init", str(weights),
                                       "--arch-args", '{"enc_features": 4}', *TINY, *few_images])
    with pytest.raises(ValueError, match="--init"):
        BurstTrainer(other)
