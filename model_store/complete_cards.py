"""Measure the benchmark cells a model card lacks and refresh its shortfall note.

    python -m model_store.complete_cards runs/gpu                  # every card in the folder
    python -m model_store.complete_cards model_store/weights --sets BSD100 --models vdsr

A GPU call carries only part of the benchmark data (64 MiB per call: BSD100 alone is 27 MB packed), so
cards trained there can come back without some sets; the trainer skips what is missing. This measures
those cells here, through the same `evaluate_pairs` path as training and `srserve eval`, adds them to
the card with the paper's figure beside them, rewrites the "Below the paper" note from all results,
and writes the card back (the weights and their sha256 are untouched). Run it before
`python -m model_store.install_weights`, so candidates and shipped cards are compared on every cell.

On a CPU with native bf16 it also measures what a card lacks of `cpu_bf16_psnr_delta`: Set5 in fp32 and
in bf16 through the CPU serving path, the largest change over the card's scales (model_store.precision).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from model_store.card import Catalog, EvalResult, ModelCard, cards_with_weights, with_shortfall_note
from model_store.data import BENCHMARK_SETS, benchmark_pairs

if TYPE_CHECKING:
    from model_store.registry import SRDescriptor

log = logging.getLogger(__name__)

LR_CONSISTENCY_SETS = ("Set5", "Set14")  # as the trainer's default: the per-image cost is the downscale


def missing_cells(card: ModelCard, sets: list[str]) -> list[tuple[str, int]]:
    have = {(r.dataset, r.scale) for r in card.results}
    return [(d, s) for s in card.scales for d in sets if (d, s) not in have]


def complete_card(card_file: Path, sets: list[str], device: str = "cpu") -> ModelCard:
    """Evaluate the card's missing (set, scale) cells; returns the card as written back."""
    from model_store.evaluate import card_result, evaluate_pairs
    from model_store.precision import cpu_runs_bf16
    from model_store.registry import load_descriptor

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
    update: dict[str, object] = {"results": results, "notes": notes}
    if card.cpu_bf16_psnr_delta is None and device == "cpu" and cpu_runs_bf16():
        for scale in card.scales:
            if scale not in descriptors:
                descriptors[scale] = load_descriptor(card, scale, catalog=catalog, device=device)
        delta = update["cpu_bf16_psnr_delta"] = cpu_bf16_delta(descriptors)
        log.info("%s: bf16 on this CPU changes Set5 PSNR by up to %.4f dB", card.name, delta)
    updated = card.model_copy(update=update)
    if updated != card:
        tmp = card_file.with_name(f".{card_file.name}.tmp")
        tmp.write_text(updated.model_dump_json(indent=2) + "\n")
        os.replace(tmp, card_file)
    return updated


def cpu_bf16_delta(descriptors: dict[int, SRDescriptor]) -> float:
    """The largest |Set5 PSNR change| of bf16 over the scales, through each descriptor as loaded (the
    CPU path, with its rewrites), rounded to 1e-4 dB."""
    import torch

    from model_store.evaluate import evaluate_pairs

    deltas = []
    for scale, desc in descriptors.items():
        pairs = list(benchmark_pairs("Set5", scale))
        fp32 = evaluate_pairs(desc, pairs, dataset="Set5").psnr_y
        desc.supports_half = True  # what is measured here: a descriptor allows bf16 only once it is known safe
        deltas.append(abs(evaluate_pairs(desc, pairs, dataset="Set5", dtype=torch.bfloat16).psnr_y - fp32))
    return round(max(deltas), 4)


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
    rows = ["| model | cells added | note | CPU bf16 Δ Set5 (dB) |", "|---|---|---|---|"]
    for card_file in _single_image_cards(args.folder, set(args.models) if args.models else None):
        before = ModelCard.model_validate_json(card_file.read_text())
        after = complete_card(card_file, args.sets, args.device)
        added: list[EvalResult] = [r for r in after.results if r not in before.results]
        cells = ", ".join(f"{r.dataset} x{r.scale} {r.psnr_y:.2f}" for r in added) or "none"
        note = "rewritten" if after.notes != before.notes else "unchanged"
        bf16 = "not measured" if after.cpu_bf16_psnr_delta is None else f"{after.cpu_bf16_psnr_delta:.4f}"
        rows.append(f"| {after.name} | {cells} | {note} | {bf16} |")
    sys.stdout.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
