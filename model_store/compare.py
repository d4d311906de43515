"""Side-by-side crops of several models' outputs on one benchmark image, with each output's numbers
under it: what a reader needs to *see* a difference the tables only summarise (bicubic blur,
PSNR-trained smoothness, GAN texture).

    srserve compare --models bicubic,fsrcnn_x4,lapsrn_x4 --dataset Set14 --image img_001 --scale 4 \
        --out docs/figures/zoo_x4_set14_img_001.png

The figure is one row: the HR image with the crop outlined, then the crop of every model's output
(nearest-neighbour zoomed, so pixels stay pixels), then the HR crop. A markdown table beside it holds
the whole-image numbers: PSNR/SSIM (Y, shaved, the published protocol), LR-consistency and
high-frequency energy (texture; see `model_store.metrics.high_frequency_energy`). Every output goes
through `model_store.evaluate.super_resolve`, the same path as `srserve eval` and the worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model_store.data import EvalPair, resolve_eval_pairs
from model_store.metrics import high_frequency_energy, lr_consistency_psnr, quality_y

log = logging.getLogger(__name__)

GAP = 8  # px between panels
CAPTION_LINES = 2
LINE_HEIGHT = 14
OUTLINE = (255, 40, 40)


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    size: int  # square, HR pixels

    def of(self, img: np.ndarray) -> np.ndarray:
        return img[self.y : self.y + self.size, self.x : self.x + self.size]


@dataclass(frozen=True)
class Panel:
    label: str
    image: np.ndarray  # the whole uint8 RGB output (HR size)
    psnr_y: float | None  # None for the ground truth itself
    ssim_y: float | None
    lr_consistency_psnr: float
    hf_energy: float


def most_textured_crop(hr: np.ndarray, size: int) -> Crop:
    """The `size`² window (stride size/4) with the highest high-frequency energy: where SR models differ."""
    h, w = hr.shape[:2]
    if size > min(h, w):
        raise ValueError(f"crop {size} px does not fit the {w}x{h} image")
    stride = max(1, size // 4)
    best, best_energy = Crop(0, 0, size), -1.0
    for y in range(0, h - size + 1, stride):
        for x in range(0, w - size + 1, stride):
            energy = high_frequency_energy(hr[y : y + size, x : x + size])
            if energy > best_energy:
                best, best_energy = Crop(x, y, size), energy
    return best


def panels_for(models: list[str], pair: EvalPair, scale: int, *, device: str = "cpu",
               weights_dirs: list[Path] | None = None) -> list[Panel]:
    """One panel per model (its output on `pair`), then the ground truth."""
    from model_store.evaluate import load_for_eval, super_resolve

    panels = []
    for name in models:
        desc = load_for_eval(name, scale, device, weights_dirs)
        sr = super_resolve(desc, pair.lr)
        q = quality_y(sr, pair.hr, shave=scale)
        panels.append(Panel(desc.name, sr, q.psnr_y, q.ssim_y, lr_consistency_psnr(sr, pair.lr, scale),
                            high_frequency_energy(sr)))
    panels.append(Panel("HR (ground truth)", pair.hr, None, None, lr_consistency_psnr(pair.hr, pair.lr, scale),
                        high_frequency_energy(pair.hr)))
    return panels


def _caption(panel: Panel) -> list[str]:
    quality = "" if panel.psnr_y is None else f"{panel.psnr_y:.2f} dB  "
    return [panel.label, f"{quality}HF {panel.hf_energy:.0f}"]


def render(panels: list[Panel], crop: Crop, zoom: int) -> np.ndarray:
    """The figure as uint8 RGB: overview with the crop outlined, then each panel's crop, captions below."""
    side = crop.size * zoom
    hr = panels[-1].image
    h, w = hr.shape[:2]
    thumb_scale = side / max(h, w)
    thumb = Image.fromarray(hr).resize((max(1, round(w * thumb_scale)), max(1, round(h * thumb_scale))),
                                       Image.Resampling.LANCZOS)
    draw_thumb = ImageDraw.Draw(thumb)
    x0, y0 = crop.x * thumb_scale, crop.y * thumb_scale
    draw_thumb.rectangle([x0, y0, x0 + crop.size * thumb_scale, y0 + crop.size * thumb_scale], outline=OUTLINE,
                         width=2)
    tiles: list[tuple[Image.Image, list[str]]] = [(thumb, ["where", f"{w}x{h}, crop {crop.size} px"])]
    for panel in panels:
        tile = Image.fromarray(np.ascontiguousarray(crop.of(panel.image))).resize((side, side),
                                                                                  Image.Resampling.NEAREST)
        tiles.append((tile, _caption(panel)))
    caption_h = CAPTION_LINES * LINE_HEIGHT + 6
    canvas = Image.new("RGB", (len(tiles) * (side + GAP) + GAP, side + caption_h + 2 * GAP), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (tile, lines) in enumerate(tiles):
        left = GAP + i * (side + GAP)
        canvas.paste(tile, (left, GAP))
        for j, line in enumerate(lines):
            draw.text((left, GAP + side + 4 + j * LINE_HEIGHT), line, fill="black", font=font)
    return np.asarray(canvas)


def markdown_table(panels: list[Panel], *, dataset: str, image: str, scale: int, crop: Crop) -> str:
    rows = [
        f"{dataset} `{image}` x{scale}, crop {crop.size} px at ({crop.x}, {crop.y}); numbers for the whole "
        "image: PSNR/SSIM on Y (shaved, 8-bit), LR-consistency PSNR (output downscaled vs the input), "
        "high-frequency energy (mean squared Laplacian of luma).",
        "",
        "| output | PSNR (dB) | SSIM | LR-consistency (dB) | HF energy |",
        "|---|---|---|---|---|",
    ]
    for p in panels:
        psnr = "" if p.psnr_y is None else f"{p.psnr_y:.2f}"
        ssim = "" if p.ssim_y is None else f"{p.ssim_y:.4f}"
        rows.append(f"| {p.label} | {psnr} | {ssim} | {p.lr_consistency_psnr:.2f} | {p.hf_energy:.1f} |")
    return "\n".join(rows) + "\n"


def write_comparison(models: list[str], *, dataset: str, image: str, scale: int, out: Path,
                     crop_size: int = 96, crop_at: tuple[int, int] | None = None, zoom: int | None = None,
                     device: str = "cpu", weights_dirs: list[Path] | None = None) -> tuple[Path, Path]:
    """Render the figure to `out` (.png) and its table to `out` with .md; returns both paths."""
    name, pairs = resolve_eval_pairs(dataset, scale)
    matches = [p for p in pairs if p.name == image]
    if not matches:
        raise ValueError(f"no image {image!r} in {name} x{scale}; there are {[p.name for p in pairs]}")
    pair = matches[0]
    if crop_at is None:
        crop = most_textured_crop(pair.hr, crop_size)
    else:
        crop = Crop(crop_at[0], crop_at[1], crop_size)
        h, w = pair.hr.shape[:2]
        if crop.x < 0 or crop.y < 0 or crop.x + crop.size > w or crop.y + crop.size > h:
            raise ValueError(f"crop {crop} does not fit the {w}x{h} image")
    panels = panels_for(models, pair, scale, device=device, weights_dirs=weights_dirs)
    figure = render(panels, crop, zoom or max(1, 256 // crop.size))
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(figure).save(out, optimize=True)
    table = out.with_suffix(".md")
    table.write_text(markdown_table(panels, dataset=name, image=image, scale=scale, crop=crop))
    log.info("wrote %s and %s", out, table)
    return out, table
