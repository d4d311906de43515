"""Training lineage: older cards' nested notes lifted into `earlier_runs`, and the shipped cards' lineages
consistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_store.card import SHIPPED_WEIGHTS_DIR, ModelCard
from model_store.lineage import lift_lineage, main, split_lineage

SHA_A, SHA_B = "a" * 64, "b" * 64
# the form `srserve train --init` wrote before `earlier_runs`: two runs nested, a command with its own
# parentheses and notes with their own brackets
NESTED = (
    "weights = best Set5 checkpoint (step 90 of 100); continued from m_x4 sha256 " + SHA_B + " (300 steps, 60 s: "
    "srserve train m --out runs/b (resumed once)) [its notes: weights = best Set5 checkpoint (step 200 of 200); "
    "continued from m_x4 sha256 " + SHA_A + " (100 steps, 20 s: srserve train m --out runs/a) [its notes: first "
    "run [GPU]]; iterations and wall time include it. Second run.]; iterations and wall time include it. Third run."
)


def test_split_lineage_lifts_every_nested_run_oldest_first() -> None:
    own, runs = split_lineage(NESTED)
    assert own == (f"weights = best Set5 checkpoint (step 90 of 100); continued from m_x4 sha256 {SHA_B} "
                   "(300 steps, 60 s); iterations and wall time include it. Third run.")
    assert [(r.weights_sha256, r.iterations, r.wall_time_s) for r in runs] == [(SHA_A, 100, 20.0), (SHA_B, 300, 60.0)]
    assert runs[0].command == "srserve train m --out runs/a" and runs[0].notes == "first run [GPU]"
    assert runs[1].command == "srserve train m --out runs/b (resumed once)"
    assert runs[1].notes == (f"weights = best Set5 checkpoint (step 200 of 200); continued from m_x4 sha256 {SHA_A} "
                             "(100 steps, 20 s); iterations and wall time include it. Second run.")


def test_notes_without_a_nested_run_are_left_alone() -> None:
    text = "weights = best Set5 checkpoint (step 5 of 5); continued on the CPU from an earlier file (3,728 steps)"
    assert split_lineage(text) == (text, [])
    with pytest.raises(ValueError, match="unbalanced"):
        split_lineage(NESTED[:200])


def test_checkpoints_keep_the_lineage_and_older_ones_still_load() -> None:
    from model_store.train import PriorTraining

    _, runs = split_lineage(NESTED)
    prior = PriorTraining("CPU", tuple(runs))
    assert PriorTraining.from_json(prior.to_json()) == prior
    assert (prior.steps, prior.seconds) == (300, 60.0) and prior.note.startswith(f"continued from m_x4 sha256 {SHA_B}")
    # before the runs were structured a checkpoint held [steps, seconds, note(, hardware)], the runs nested
    older = NESTED[NESTED.index("continued from"):NESTED.index("; iterations and wall time include it. Third")]
    assert PriorTraining.from_json(json.dumps([300, 60.0, older, "CPU"])) == prior
    assert PriorTraining.from_json('[0, 0.0, ""]') == PriorTraining()


def test_cli_rewrites_an_old_card_once(tmp_path: Path) -> None:
    shipped = ModelCard.model_validate_json((SHIPPED_WEIGHTS_DIR / "fsrcnn_x2.json").read_text())
    assert shipped.training is not None
    old = shipped.model_copy(update={"training": shipped.training.model_copy(
        update={"notes": NESTED, "earlier_runs": []})})
    path = tmp_path / "fsrcnn_x2.json"
    path.write_text(old.model_dump_json(indent=2))
    assert main([str(path)]) == 0
    lifted = ModelCard.model_validate_json(path.read_text())
    assert lifted.training is not None and len(lifted.training.earlier_runs) == 2
    assert lifted.model_copy(update={"training": None}) == old.model_copy(update={"training": None})
    assert lift_lineage(lifted) is lifted  # already lifted: nothing to do


@pytest.mark.parametrize("path", sorted(SHIPPED_WEIGHTS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_lineages_are_lifted_and_consistent(path: Path) -> None:
    card = ModelCard.model_validate(json.loads(path.read_text()))
    t = card.training
    if t is None:
        return
    assert "[its notes:" not in t.notes and lift_lineage(card) is card
    steps = [r.iterations for r in t.earlier_runs] + [t.iterations]
    seconds = [r.wall_time_s for r in t.earlier_runs] + [t.wall_time_s]
    assert steps == sorted(steps) and seconds == sorted(seconds)  # cumulative counts only grow
    if t.earlier_runs:  # the card says which weights it continued from: the last earlier run's
        assert f"sha256 {t.earlier_runs[-1].weights_sha256} " in t.notes
