"""Training smoke tests: a tiny FSRCNN on a tiny crop learns, writes loadable weights and a valid card,
resumes from its checkpoint, and honours the time budget."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from model_store.card import Catalog, EarlierRun, ModelCard
from model_store.registry import load_descriptor, sha256_file
from model_store.train import TrainConfig, Trainer, _loss_fn, hardware_string, run_summary

TINY = {"d": 8, "s": 4, "m": 1, "residual": False}  # no bicubic skip: learning from scratch shows clearly


def _config(data: Path, out: Path, **over: object) -> TrainConfig:
    base: dict[str, object] = dict(arch="fsrcnn", scale=2, iters=40, batch=8, patch=24, lr=3e-3, loss="l1",
                                   data=[data], out=out, arch_args=TINY, eval_every=20, log_every=10,
                                   eval_sets=["Set5"], device="cpu", command="srserve train fsrcnn --scale 2")
    base.update(over)
    return TrainConfig.model_validate(base)


def test_training_reduces_loss_and_writes_a_loadable_model(tiny_data: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(tiny_data, tmp_path))
    scale, lr, targets = trainer._batch()  # a fixed batch to compare before / after

    def fixed_loss() -> float:
        with torch.no_grad():
            return float(_loss_fn("l1", trainer._predict(lr, scale)[0], targets[0]))

    before = fixed_loss()
    trainer.fit()
    trainer.module.load_state_dict(trainer.best_state or {})
    assert fixed_loss() < 0.7 * before
    card = trainer.finish()

    assert card == ModelCard.model_validate(json.loads((tmp_path / "fsrcnn_x2.json").read_text()))
    assert card.weights_sha256 == sha256_file(tmp_path / "fsrcnn_x2.safetensors")
    assert card.arch_args == TINY and card.scales == [2] and card.channels == "y"
    # the card counts the steps behind the shipped (best Set5) weights, and says which checkpoint they are
    best_step = trainer.best_step
    assert dict(trainer.history)[best_step] == max(p for _, p in trainer.history) == round(trainer.best_psnr, 4)
    assert card.training is not None and card.training.iterations == best_step <= 40
    assert f"weights = best Set5 checkpoint (step {best_step} of 40)" in card.training.notes
    assert card.params == sum(p.numel() for p in trainer.module.parameters())
    set5 = card.result("Set5", 2)
    assert set5 is not None and set5.paper_psnr_y == 37.00 and set5.lr_consistency_psnr

    catalog = Catalog.load([tmp_path])
    desc = load_descriptor(catalog.get("fsrcnn_x2"), 2, catalog=catalog)
    out = desc(torch.rand(1, 3, 10, 12))
    assert out.shape == (1, 3, 20, 24)


def test_bf16_is_not_measured_on_a_cpu_that_only_emulates_it(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("model_store.train.cpu_runs_bf16", lambda: False)
    trainer = Trainer(_config(tiny_data, tmp_path, iters=4, eval_every=4))
    dtypes: list[torch.dtype | None] = []
    evaluate = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda *a, **kw: dtypes.append(kw.get("dtype")) or evaluate(*a, **kw))
    trainer.fit()
    card = trainer.finish()
    assert dtypes and torch.bfloat16 not in dtypes  # no emulated bf16 pass
    assert card.half_precision_safe is False
    assert card.notes.endswith("bf16 not measured (the training CPU has no native bf16): serves in fp32.")


@pytest.mark.parametrize("native_bf16", [False, True])
def test_auto_precision_on_a_cpu_is_bf16_autocast_only_where_bf16_is_native(
    native_bf16: bool, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("model_store.train.cpu_trains_faster_in_bf16", lambda: native_bf16)
    trainer = Trainer(_config(tiny_data, tmp_path, iters=4, eval_every=4))
    assert trainer.amp_dtype == (torch.bfloat16 if native_bf16 else None)
    trainer.fit()
    card = trainer.finish()
    assert card.training is not None and card.training.precision == ("bf16 autocast" if native_bf16 else "fp32")


def test_resume_continues_from_the_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    first = Trainer(_config(tiny_data, tmp_path, iters=20, eval_every=10))
    first.fit()
    second = Trainer(_config(tiny_data, tmp_path, iters=30, eval_every=10, resume=True))
    second.load_checkpoint()
    assert second.step == 20
    assert second.best_step == first.best_step in (10, 20) and second.best_psnr == first.best_psnr
    for a, b in zip(first.module.parameters(), second.module.parameters(), strict=True):
        assert torch.equal(a.detach(), b.detach())
    second.fit()
    assert second.step == 30


def test_time_budget_stops_and_still_writes_outputs(tiny_data: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(tiny_data, tmp_path, iters=10**6, time_budget=1.0))
    trainer.fit()
    trainer.finish()
    assert 0 < trainer.step < 10**6
    assert (tmp_path / "fsrcnn_x2.safetensors").is_file() and (tmp_path / "fsrcnn_x2.json").is_file()


def test_run_summary_says_where_the_run_started_and_what_the_rewarmed_rate_cost() -> None:
    history = [(0, 31.38), (500, 30.914), (9000, 31.5649), (10297, 31.55)]
    assert run_summary(history, 10297, 6600.0, day="2026-12-07") == (
        "this run (2026-12-07): 10,297 steps in 110 min (0.64 s per step, evaluations included); "
        "Set5 31.38 -> 31.56 dB (lowest 30.91 dB, at step 500)")
    # never below the start: no low point; no step 0 (a run from scratch): the best only
    assert run_summary([(0, 30.0), (10, 30.5)], 10, 60.0, day="d").endswith("; Set5 30.00 -> 30.50 dB")
    from_scratch = run_summary([(10, 30.5), (20, 30.2)], 20, 60.0, "Set5 bursts", day="d")
    assert from_scratch.endswith("; Set5 bursts best 30.50 dB")
    assert run_summary([], 0, 0.0, day="d") == "this run (d): 0 steps in 0 min"


def test_hardware_note_joins_the_cards_hardware_details(tiny_data: Path, tmp_path: Path) -> None:
    plain = hardware_string(torch.device("cpu"))
    noted = hardware_string(torch.device("cpu"), "beside another training")
    assert plain.endswith(")") and noted == plain[:-1] + "; beside another training)"
    trainer = Trainer(_config(tiny_data, tmp_path, iters=2, eval_every=0, hardware_note="beside another training"))
    trainer.fit()
    card = trainer.finish()
    assert card.training is not None and card.training.hardware == noted


def test_cli_arguments_become_the_config(tiny_data: Path) -> None:
    from srserve.commands import train as train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["train", "vdsr", "--scale", "3", "--arch-arg", "depth=4", "--time-budget", "5",
                              "--data", str(tiny_data), "--hardware-note", "beside another training",
                              "--freeze-batchnorm", "--scale-augment", "0.9", "0.6"])
    assert args.handler is train_cmd._handle and args.hardware_note == "beside another training"
    assert args.freeze_batchnorm and args.scale_augment == [0.9, 0.6]
    assert args.arch_arg == [("depth", 4)] and args.time_budget == 5.0


def test_init_starts_from_trained_weights_and_counts_their_training(tiny_data: Path, tmp_path: Path) -> None:
    first = Trainer(_config(tiny_data, tmp_path / "a", iters=20, eval_every=10))
    first.fit()
    first.finish()
    weights = tmp_path / "a" / "fsrcnn_x2.safetensors"
    second = Trainer(_config(tiny_data, tmp_path / "b", iters=10, eval_every=10, init=weights))
    start = {k: v.clone() for k, v in second.module.state_dict().items()}
    from safetensors.torch import load_file

    assert all(torch.equal(v, start[k]) for k, v in load_file(str(weights)).items())
    second.fit()
    card = second.finish()
    first_card = first.finish()
    assert card.training is not None and first_card.training is not None
    # the steps behind both runs' shipped weights; the first run, as its card recorded it, in the lineage
    assert card.training.iterations == first_card.training.iterations + second.best_step
    assert card.training.earlier_runs == [EarlierRun(
        name="fsrcnn_x2", weights_sha256=first_card.weights_sha256, iterations=first_card.training.iterations,
        wall_time_s=first_card.training.wall_time_s, command=first_card.training.command,
        notes=first_card.training.notes)]
    assert f"continued from fsrcnn_x2 sha256 {first_card.weights_sha256}" in card.training.notes
    # the run measured the --init weights first: the card says where it started, and ships nothing worse
    assert second.history[0] == (0, round(first.best_psnr, 4)) and second.best_psnr >= first.best_psnr
    assert "; this run (" in card.training.notes
    assert f"Set5 {second.history[0][1]:.2f} -> {second.best_psnr:.2f} dB" in card.training.notes
    # a third run continues the list rather than nesting it
    third = Trainer(_config(tiny_data, tmp_path / "c3", iters=2, eval_every=0, init=tmp_path / "b" / weights.name))
    third.fit()
    third_card = third.finish()
    assert third_card.training is not None
    assert [r.weights_sha256 for r in third_card.training.earlier_runs] == [first_card.weights_sha256,
                                                                            card.weights_sha256]
    assert third_card.training.earlier_runs[1].notes == card.training.notes
    assert card.training.hardware == first_card.training.hardware  # one machine: no "A, then A"
    # another shape, or weights that do not match their card, are refused before any training
    with pytest.raises(ValueError, match=r"--init .*card is fsrcnn"):
        Trainer(_config(tiny_data, tmp_path / "c", init=weights, arch_args={**TINY, "d": 12}))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ValueError, match="sha256"):
        Trainer(_config(tiny_data, tmp_path / "c", init=weights))


def test_init_accepts_cards_written_before_an_argument_existed(tiny_data: Path, tmp_path: Path) -> None:
    # a card that predates an argument means its default: here `residual` (default True) is dropped
    args = {**TINY, "residual": True}
    first = Trainer(_config(tiny_data, tmp_path / "a", iters=2, eval_every=0, arch_args=args))
    first.fit()
    first.finish()
    card_file = tmp_path / "a" / "fsrcnn_x2.json"
    card = json.loads(card_file.read_text())
    del card["arch_args"]["residual"]
    card_file.write_text(json.dumps(card))
    weights = tmp_path / "a" / "fsrcnn_x2.safetensors"
    assert Trainer(_config(tiny_data, tmp_path / "b", init=weights, arch_args=args)).arch_args == args
    with pytest.raises(ValueError, match=r"--init .*card is fsrcnn"):  # the default is not what was asked
        Trainer(_config(tiny_data, tmp_path / "c", init=weights, arch_args={**args, "residual": False}))


def test_init_without_arch_args_continues_the_weights_architecture(tiny_data: Path, tmp_path: Path) -> None:
    first = Trainer(_config(tiny_data, tmp_path / "a", iters=2, eval_every=0))
    first.fit()
    first.finish()
    # no arch_args given: the card's (TINY, not the constructor defaults) are used
    second = Trainer(_config(tiny_data, tmp_path / "b", arch_args={}, init=tmp_path / "a" / "fsrcnn_x2.safetensors"))
    assert second.arch_args == TINY


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_batchnorm_keeps_running_statistics_and_still_trains_the_affine_maps(
    tiny_data: Path, tmp_path: Path, freeze: bool
) -> None:
    trainer = Trainer(_config(tiny_data, tmp_path, arch="srresnet", arch_args={"num_feat": 8, "num_block": 1},
                              iters=3, eval_every=0, freeze_batchnorm=freeze))
    bns = [m for m in trainer.module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    trainer.fit()
    after = trainer.module.state_dict()
    running = [k for k in before if k.endswith(("running_mean", "running_var"))]
    affine = [f"{n}.weight" for n, m in trainer.module.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(running) == 2 * len(bns) == 6 and len(affine) == len(bns)
    # frozen: the statistics stay exactly; unfrozen: every batch moves them
    assert all(torch.equal(before[k], after[k]) for k in running) == freeze
    assert all(not torch.equal(before[k], after[k]) for k in affine)  # gamma learns either way
    assert trainer.module.head[0].training and all(m.training != freeze for m in bns)
    notes = trainer.finish().training.notes  # type: ignore[union-attr]
    assert ("BatchNorm frozen" in notes) == freeze


def test_scale_augmentation_enlarges_the_pool_and_the_card_says_so(tiny_data: Path, tmp_path: Path) -> None:
    plain = Trainer(_config(tiny_data, tmp_path / "plain", iters=2, eval_every=0))
    trainer = Trainer(_config(tiny_data, tmp_path / "aug", iters=2, eval_every=0, scale_augment=[0.75, 0.5]))
    assert (plain.sampler.n_images, trainer.sampler.n_images) == (1, 3)
    plain.fit()
    trainer.fit()
    recipe = trainer.finish().training
    assert recipe is not None and recipe.augmentation.startswith("every image also shrunk by 0.75, 0.5 (antialiased")
    assert plain.finish().training.augmentation.startswith("random HR crops")  # type: ignore[union-attr]
