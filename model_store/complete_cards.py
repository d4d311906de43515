"""Measure the benchmark cells a model card lacks and refresh its shortfall note.

    python -m model_store.complete_cards runs/gpu                  # every card in the folder
    python -m model_store.complete_cards model_store/weights --sets BSD100 --models vdsr

A GPU call carries only part of the benchmark data (64 MiB per call: BSD100 alone is 27 MB packed), so
cards trained there can come back without some sets; the trainer skips what is missing. This measures
those cells here, through the same `evaluate_pairs` path as training and `srserve eval`, adds them to
the card with the paper's figure beside them, rewrites the "Below the paper" note from all results,
and writes the card back (the weights and their sha256 are untouched). Run it before
`python -m model_store.install_weights`, so candidates and shipped cards are compared on every cell.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from model_store.card import Catalog, EvalResult, ModelCard, cards_with_weights, with_shortfall_note
from model_store.data import BENCHMARK_SETS, benchmark_pairs

log = logging.getLogger(__name__)

LR_CONSISTENCY_SETS = ("Set5", "Set14")  # as the trainer's default: the per-image cost is the downscale


def missing_cells(card: ModelCard, sets: list[str]) -> list[tuple[str, int]]:
    have = {(r.dataset, r.scale) for r in card.results}
    return [(d, s) for s in card.scales for d in sets if (d, s) not in have]


def complete_card(card_file: Path, sets: list[str], device: str = "cpu") -> ModelCard:
    """Evaluate the card's missing (set, scale) cells; returns the card as written back."""
    from model_store.evaluate import card_result, evaluate_pairs
    from model_store.registry import SRDescriptor, load_descriptor

    card = ModelCard.model_validate_json(card_file.read_text())
    results = list(card.results)
    catalog = Catalog([card], {card.name: card_file.parent})  # this file's weights, even where a name ships
    descriptors: dict[int, SRDescriptor] = {}  # one weights load (and sha256 check) per scale
    for dataset, scale in missing_cells(card, sets):
        if scale not in descriptors:
            descriptors[scale] = load_descriptor(card, scale, catalog=catalog, device=device)
        desc = descriptors[scale]
        report = evaluate_pairs(desc, list(benchmark_pairs(dataset, scale)), dataset=dataset,
                                lr_consistency=dataset in LR_CONSISTENCY_SETS)
        results.append(card_result(report, card.family))
        log.info("%s x%d %s: %.3f dB / %.4f", card.name, scale, dataset, report.psnr_y, report.ssim_y)
    order = {d: i for i, d in enumerate(BENCHMARK_SETS)}
    results.sort(key=lambda r: (r.scale, order.get(r.dataset, len(order)), r.dataset))
    notes = with_shortfall_note(card.notes, results, card.family)
    updated = card.model_copy(update={"results": results, "notes": notes})
    if updated != card:
        tmp = card_file.with_name(f".{card_file.name}.tmp")
        tmp.write_text(updated.model_dump_json(indent=2) + "\n")
        os.replace(tmp, card_file)
    return updated


def _single_image_cards(folder: Path, names: set[str] | None) -> list[Path]:
    return [path for path, card in cards_with_weights(folder)
            if card.kind == "single" and (names is None or card.name in names)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_store.complete_cards", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="folder of <name>.json cards + weights")
    p.add_argument("--sets", nargs="+", default=list(BENCHMARK_SETS), help="benchmark sets every card should have")
    p.add_argument("--models", nargs="+", help="only these card names")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = ["| model | cells added | note |", "|---|---|---|"]
    for card_file in _single_image_cards(args.folder, set(args.models) if args.models else None):
        before = ModelCard.model_validate_json(card_file.read_text())
        after = complete_card(card_file, args.sets, args.device)
        added: list[EvalResult] = [r for r in after.results if r not in before.results]
        cells = ", ".join(f"{r.dataset} x{r.scale} {r.psnr_y:.2f}" for r in added) or "none"
        rows.append(f"| {after.name} | {cells} | {'rewritten' if after.notes != before.notes else 'unchanged'} |")
    sys.stdout.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
