"""Tiling: split an LR image into fixed-shape overlapping tiles and stitch the upscaled tiles back,
seam-free. Pure numpy; shared by the worker engine, evaluation and tests.

Each output pixel is taken from exactly one tile: the one whose *core* (the tile minus `overlap`
pixels on every side facing another tile) contains it. With `overlap` at least the network's
receptive field, every core pixel saw the same context as in an untiled run, so tiled == untiled up
to float rounding. Edge tiles are shifted inward instead of padded, so no tile ever sees padding the
untiled run would not see; only an image smaller than the tile in some dimension gets a smaller
tile in that dimension (rounded up to the model's size multiple, the only padding we add).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """An LR window [y0, y0+h) x [x0, x0+w) and the core region it owns, in LR pixels."""

    index: int
    y0: int
    x0: int
    h: int
    w: int
    core_y0: int
    core_y1: int
    core_x0: int
    core_x1: int


@dataclass(frozen=True)
class TilePlan:
    height: int
    width: int
    tile_h: int  # the fixed tile shape every tile of this plan has (after size-multiple padding)
    tile_w: int
    overlap: int
    tiles: tuple[Tile, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.tile_h, self.tile_w


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile start offsets along one axis: stride tile - 2*overlap, last tile flush with the edge."""
    if length <= tile:
        return [0]
    stride = tile - 2 * overlap
    if stride <= 0:
        raise ValueError(f"tile {tile} too small for overlap {overlap}")
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def _cores(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """Split [0, length) among tiles at the midpoints of their overlaps: each pixel owned once."""
    cores: list[tuple[int, int]] = []
    for i, s in enumerate(starts):
        lo = 0 if i == 0 else (starts[i - 1] + tile + s) // 2
        hi = length if i == len(starts) - 1 else (s + tile + starts[i + 1]) // 2
        cores.append((lo, hi))
    return cores


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _fitted(length: int, tile: int, overlap: int, size_multiple: int, step: int) -> int:
    """The smallest tile side that covers `length` with as many tiles as `tile` would need: the
    cores split the axis evenly instead of the last tile overlapping its neighbour by up to a tile.
    On an axis that needs several tiles the side is rounded up to a multiple of `step` (still at most
    `tile`), so images of similar sizes share a tile shape; an axis that fits one tile keeps the
    image's own length (padding past the image would change its border pixels)."""
    if length <= tile:
        return round_up(length, size_multiple)
    count = -(-(length - 2 * overlap) // (tile - 2 * overlap))
    side = -(-(length - 2 * overlap) // count) + 2 * overlap
    return min(tile, round_up(side, math.lcm(size_multiple, step)))


def plan_tiles(height: int, width: int, tile: int, overlap: int, size_multiple: int = 1, *,
               fit: bool = False, fit_step: int = 1) -> TilePlan:
    """Plan fixed-shape tiles covering an LR image; `tile` is the LR tile side (the largest with
    `fit`, which sizes the tiles to this image: less overlap to compute, but the shape differs
    between images unless `fit_step` rounds it: a 512² image with tile 768 is one 512² tile instead
    of 256² tiles computing 2.25x its pixels)."""
    if height <= 0 or width <= 0:
        raise ValueError("empty image")
    tile = round_up(tile, size_multiple)
    if fit:
        tile_h, tile_w = (_fitted(n, tile, overlap, size_multiple, fit_step) for n in (height, width))
    else:  # a small dimension gets a smaller tile (rounded to the size multiple); everything else `tile`
        tile_h = tile if height >= tile else round_up(height, size_multiple)
        tile_w = tile if width >= tile else round_up(width, size_multiple)
    ys = _starts(height, tile_h, overlap)
    xs = _starts(width, tile_w, overlap)
    ycores = _cores(ys, tile_h, height)
    xcores = _cores(xs, tile_w, width)
    tiles = []
    for y0, (cy0, cy1) in zip(ys, ycores, strict=True):
        for x0, (cx0, cx1) in zip(xs, xcores, strict=True):
            tiles.append(
                Tile(
                    len(tiles), y0, x0, min(tile_h, height - y0), min(tile_w, width - x0), cy0, cy1, cx0, cx1
                )
            )
    return TilePlan(height, width, tile_h, tile_w, overlap, tuple(tiles))


def extract_tile(image: np.ndarray, tile: Tile, plan: TilePlan) -> np.ndarray:
    """(H, W, C) image -> (tile_h, tile_w, C) window; pads (edge mode) only up to the size multiple."""
    window = image[tile.y0 : tile.y0 + tile.h, tile.x0 : tile.x0 + tile.w]
    pad_h, pad_w = plan.tile_h - tile.h, plan.tile_w - tile.w
    if pad_h or pad_w:
        window = np.pad(window, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return window


class Stitcher:
    """Assembles upscaled tiles into the (H*s, W*s, C) output on the host, core regions only."""

    def __init__(self, plan: TilePlan, scale: int, channels: int = 3, dtype: type = np.float32) -> None:
        self.plan = plan
        self.scale = scale
        self.shape = (plan.height * scale, plan.width * scale, channels)
        self.dtype = np.dtype(dtype)
        self._output: np.ndarray | None = None
        self._done = np.zeros(len(plan.tiles), dtype=bool)

    @property
    def output(self) -> np.ndarray:
        if self._output is None:
            self._output = np.empty(self.shape, dtype=self.dtype)
        return self._output

    def add(self, tile: Tile, upscaled: np.ndarray, *, owned: bool = False) -> None:
        """Copy the tile's core into the output. `owned`: the caller hands `upscaled` over (nothing else
        writes it later); a one-tile plan's tile that is exactly the output then becomes the output, with
        no copy and no fresh output allocation (whose first-touch page faults cost more than the copy:
        up to 25 ms for a 1024² RGB output on the 2-core test VM)."""
        if owned and len(self.plan.tiles) == 1 and upscaled.shape == self.shape and upscaled.dtype == self.dtype:
            self._output = upscaled
        else:
            s = self.scale
            cy0, cy1 = tile.core_y0 - tile.y0, tile.core_y1 - tile.y0
            cx0, cx1 = tile.core_x0 - tile.x0, tile.core_x1 - tile.x0
            self.output[tile.core_y0 * s : tile.core_y1 * s, tile.core_x0 * s : tile.core_x1 * s] = upscaled[
                cy0 * s : cy1 * s, cx0 * s : cx1 * s
            ]
        self._done[tile.index] = True

    @property
    def tiles_done(self) -> int:
        return int(self._done.sum())

    @property
    def complete(self) -> bool:
        return bool(self._done.all())
