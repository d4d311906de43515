"""Lift the training lineage out of older cards' notes into `TrainingRecipe.earlier_runs`.

Before `earlier_runs` existed, `srserve train --init` wrote the runs behind its starting weights into
the new card's `training.notes`, nested one level per run:
`continued from NAME sha256 SHA (STEPS steps, SECONDS s: COMMAND) [its notes: ...]; iterations and
wall time include it`. Cards trained that way (ours before 2026-12, or a user's) are read the same
either way; this turns them into the structured form, so that `--init` from such a card carries on
the list instead of nesting it one level deeper.

    python -m model_store.lineage model_store/weights/*.json   # rewrite cards in place
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from model_store.card import EarlierRun, ModelCard, TrainingRecipe

log = logging.getLogger(__name__)

_CONTINUED = re.compile(r"continued from (?P<name>[a-z0-9][a-z0-9_.-]*) sha256 (?P<sha>[0-9a-f]{64}|None) "
                        r"\((?P<steps>\d+) steps, (?P<seconds>\d+) s: ")
_ITS_NOTES = " [its notes: "


def _closing(text: str, start: int, open_: str, close: str) -> int:
    """The index of the bracket closing one opened just before `start` (nested pairs skipped)."""
    depth = 1
    for i in range(start, len(text)):
        depth += (text[i] == open_) - (text[i] == close)
        if depth == 0:
            return i
    raise ValueError(f"unbalanced {open_}{close} in training notes: {text[start - 40:start + 40]!r}")


def continued_from(run: EarlierRun) -> str:
    """The sentence a card's notes give the run its weights started from (the rest is in `earlier_runs`)."""
    return f"continued from {run.name} sha256 {run.weights_sha256} ({run.iterations} steps, {run.wall_time_s:.0f} s)"


def split_lineage(notes: str) -> tuple[str, list[EarlierRun]]:
    """A run's own notes (with a short `continued from NAME sha256 SHA (N steps, S s)` in place of the
    nested record) and the runs behind it, oldest first. Notes without a nested record come back as
    they are, with no runs."""
    m = _CONTINUED.search(notes)
    if m is None:
        return notes, []
    close = _closing(notes, m.end(), "(", ")")
    command, rest = notes[m.end():close], close + 1
    inner = ""
    if notes.startswith(_ITS_NOTES, rest):
        inner_end = _closing(notes, rest + len(_ITS_NOTES), "[", "]")
        inner, rest = notes[rest + len(_ITS_NOTES):inner_end], inner_end + 1
    inner_own, runs = split_lineage(inner)
    sha = None if m["sha"] == "None" else m["sha"]
    runs.append(EarlierRun(name=m["name"], weights_sha256=sha, iterations=int(m["steps"]),
                           wall_time_s=float(m["seconds"]), command=command, notes=inner_own))
    return notes[:m.start()] + continued_from(runs[-1]) + notes[rest:], runs


def lift_lineage(card: ModelCard) -> ModelCard:
    """`card` with any lineage nested in its training notes moved to `training.earlier_runs`."""
    t = card.training
    if t is None or t.earlier_runs:
        return card
    own, runs = split_lineage(t.notes)
    if not runs:
        return card
    training: TrainingRecipe = t.model_copy(update={"notes": own, "earlier_runs": runs})
    return card.model_copy(update={"training": training})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cards", type=Path, nargs="+", help="model card .json files, rewritten in place")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in args.cards:
        card = ModelCard.model_validate_json(path.read_text())
        lifted = lift_lineage(card)
        if lifted is card:
            log.info("%s: nothing nested", path)
            continue
        path.write_text(lifted.model_dump_json(indent=2) + "\n")
        assert lifted.training is not None
        log.info("%s: %d earlier runs lifted", path, len(lifted.training.earlier_runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
