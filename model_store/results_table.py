"""Regenerate model_store/RESULTS.md from the model cards: ours vs the paper, per model, scale and set.

    python -m model_store.results_table            # rewrite model_store/RESULTS.md
    python -m model_store.results_table --check    # exit 1 if RESULTS.md is out of date
    python -m model_store.results_table --weights runs/ --stdout   # include another folder, print only

No torch: it reads the JSON cards only (the numbers were measured when each card was written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model_store.card import Catalog, ModelCard

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"
SETS = ("Set5", "Set14", "BSD100")
HEADER = """# Model zoo results

PSNR (dB) / SSIM on the Y channel (BT.601), output rounded to 8 bit, `scale` pixels shaved
(the protocol of ../shared/data/README.md), LR made with MATLAB's antialiased bicubic. x8 pairs are
made from the x4 HR images cropped to a multiple of 8. "paper" is the figure published by the
model's own paper; Δ = ours − paper. Generated from the model cards by
`python -m model_store.results_table`; do not edit by hand.
"""


def _cell(card: ModelCard, dataset: str, scale: int) -> str:
    r = card.result(dataset, scale)
    if r is None:
        return "–"
    text = f"{r.psnr_y:.2f} / {r.ssim_y:.4f}"
    if r.paper_psnr_y is not None and card.source != "builtin":
        text += f" ({r.paper_psnr_y:.2f}, {r.psnr_y - r.paper_psnr_y:+.2f})"
    return text


def render(cards: list[ModelCard]) -> str:
    singles = sorted((c for c in cards if c.kind == "single"), key=lambda c: (c.params > 0, c.family, c.scales))
    lines = [HEADER, "## Single-image models", "",
             "Each cell: ours PSNR / SSIM (paper PSNR, Δ).", "",
             "| model | scale | channels | params | FLOPs/px | " + " | ".join(SETS) + " |",
             "|---|---|---|---|---|" + "---|" * len(SETS)]
    for card in singles:
        for scale in card.scales:
            if not any(card.result(d, scale) for d in SETS):
                continue
            cells = " | ".join(_cell(card, d, scale) for d in SETS)
            lines.append(f"| {card.name} | x{scale} | {card.channels} | {card.params:,} | "
                         f"{card.flops_per_output_pixel:,} | {cells} |")
    lines += ["", "## Training", "", "| model | iterations | batch x patch | loss | hardware | wall time | command |",
              "|---|---|---|---|---|---|---|"]
    for card in singles:
        t = card.training
        if t is None:
            continue
        lines.append(f"| {card.name} | {t.iterations:,} | {t.batch_size} x {t.patch_size}² | {t.loss} | "
                     f"{t.hardware} | {t.wall_time_s:.0f} s | `{t.command}` |")
    notes = [f"- **{c.name}**: {c.notes}" for c in singles if c.notes and c.source != "builtin"]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, action="append", default=[], help="extra card folder")
    parser.add_argument("--check", action="store_true", help="fail if RESULTS.md differs from the cards")
    parser.add_argument("--stdout", action="store_true", help="print instead of writing RESULTS.md")
    args = parser.parse_args(argv)
    text = render(list(Catalog.load(args.weights)))
    if args.stdout:
        sys.stdout.write(text)
    elif args.check:
        if not RESULTS_PATH.is_file() or RESULTS_PATH.read_text() != text:
            sys.stderr.write(f"{RESULTS_PATH} is out of date: run python -m model_store.results_table\n")
            return 1
    else:
        RESULTS_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
