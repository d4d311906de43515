"""Install trained weights into the shipped folder only where they beat what ships.

    python -m model_store.install_weights runs/gpu            # decide, copy, print a table
    python -m model_store.install_weights runs/gpu --dry-run  # only print

A training run (CPU minutes, a GPU call with a short budget) can end below the weights already
shipped for the same name; copying its folder wholesale would quietly make the service worse. Here a
candidate replaces the shipped card and weights only if its mean PSNR over the (set, scale) results
both cards report is higher; new names are installed as they are. The candidate's sha256 is checked
against its own card first. Regenerate `model_store/RESULTS.md` afterwards
(`python -m model_store.results_table`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from model_store.card import SHIPPED_WEIGHTS_DIR, ModelCard, cards_with_weights
from model_store.registry import sha256_file


@dataclass(frozen=True)
class Decision:
    name: str
    install: bool
    reason: str


def mean_psnr(card: ModelCard, keys: set[tuple[str, int]]) -> float:
    values = [r.psnr_y for r in card.results if (r.dataset, r.scale) in keys]
    return sum(values) / len(values)


def decide(candidate: ModelCard, shipped: ModelCard | None) -> Decision:
    if shipped is None:
        return Decision(candidate.name, True, "new model")
    common = {(r.dataset, r.scale) for r in candidate.results} & {(r.dataset, r.scale) for r in shipped.results}
    if not common:
        return Decision(candidate.name, False, "no result in common with the shipped card: compare by hand")
    new, old = mean_psnr(candidate, common), mean_psnr(shipped, common)
    sets = ", ".join(f"{d} x{s}" for d, s in sorted(common))
    verdict = "better" if new > old else "not better"
    return Decision(candidate.name, new > old, f"{verdict}: mean PSNR {new:.3f} vs shipped {old:.3f} dB ({sets})")


def install(source: Path, target: Path = SHIPPED_WEIGHTS_DIR, *, dry_run: bool = False) -> list[Decision]:
    decisions = []
    for card_file, candidate in cards_with_weights(source):
        assert candidate.weights_file is not None
        weights = source / candidate.weights_file
        if not weights.is_file() or sha256_file(weights) != candidate.weights_sha256:
            decisions.append(Decision(candidate.name, False, f"{weights.name} missing or not the card's sha256"))
            continue
        shipped_file = target / card_file.name
        shipped = ModelCard.model_validate_json(shipped_file.read_text()) if shipped_file.is_file() else None
        decision = decide(candidate, shipped)
        decisions.append(decision)
        if decision.install and not dry_run:
            shutil.copyfile(weights, target / candidate.weights_file)
            shutil.copyfile(card_file, shipped_file)
    return decisions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_store.install_weights", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="folder of trained <name>.json + <name>.safetensors")
    p.add_argument("--target", type=Path, default=SHIPPED_WEIGHTS_DIR)
    p.add_argument("--dry-run", action="store_true", help="decide and print, copy nothing")
    args = p.parse_args(argv)
    decisions = install(args.source, args.target, dry_run=args.dry_run)
    lines = ["| model | installed | why |", "|---|---|---|"]
    lines += [f"| {d.name} | {'yes' if d.install and not args.dry_run else 'no'} | {d.reason} |" for d in decisions]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
