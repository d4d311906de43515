"""MATLAB-compatible bicubic `imresize` (antialiased when downscaling), numpy and torch.

Every published SR table makes its LR images with MATLAB's `imresize(HR, 1/s, 'bicubic')`, so
training, evaluation, LR-consistency and the `bicubic` model all use this one kernel. The resize is
separable: per axis we precompute, for each output index, the input indices it reads (with MATLAB's
symmetric border handling) and their weights, then gather and sum. That is O(taps x pixels), works
for any scale, and gives the same numbers in numpy (CPU) and torch (CPU/GPU).

Integer factors - every resize in SR - take faster routes to the same sums: `polyphase_plan` (the
weights depend only on the output's phase, the borders are a padding) and, on CPU, `banded_plan`
(the polyphase kernel as small dense GEMMs over windows of the padded input).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_CUBIC_SUPPORT = 4.0  # the kernel is non-zero on (-2, 2)


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic with a = -0.5, as MATLAB's imresize.
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=256)
def raw_contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(weights, indices), each (out_length, taps): the kernel taps of every output pixel, with
    0-based input indices *before* the symmetric border mirroring (they may be < 0 or >= in_length)."""
    antialias = scale < 1
    kernel_width = _CUBIC_SUPPORT / scale if antialias else _CUBIC_SUPPORT
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - kernel_width / 2.0)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    dist = u[:, None] - indices
    weights = scale * _cubic(dist * scale) if antialias else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # drop all-zero tap columns (MATLAB does the same; saves work)
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep].astype(np.float64), (indices[:, keep] - 1).astype(np.int64)


@lru_cache(maxsize=256)
def contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(weights, indices), each (out_length, taps): MATLAB's `contributions()` with symmetric edges."""
    weights, raw = raw_contributions(in_length, out_length, scale)
    # symmetric padding: mirror indices that fall outside [0, in_length)
    aux = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    return weights, aux[np.mod(raw, 2 * in_length)]


@dataclass(frozen=True)
class PolyphasePlan:
    """One axis of an integer-factor resize as a convolution (see `polyphase_plan`):
    out[q * phases + p] = sum_j kernel[p, j] * x_sym[q * stride + start + j], where x_sym is the input
    with `pad` symmetric (edge-repeating) pixels on each side."""

    kernel: np.ndarray  # (phases, taps) float64
    phases: int
    stride: int
    start: int
    pad: int


@lru_cache(maxsize=256)
def polyphase_plan(length: int, out_len: int, scale: float) -> PolyphasePlan | None:
    """For an integer factor (upscaling by s, or antialiased downscaling by 1/s), MATLAB's weights
    depend only on the output's phase (index mod s) and its symmetric borders are a padding of the
    input: the resize is one strided convolution with a kernel per phase, no gather. None where that
    does not hold (other factors; inputs so small that the mirroring wraps more than once)."""
    if scale > 1 and float(scale).is_integer() and out_len == length * int(scale):
        phases, stride = int(scale), 1
    elif scale < 1 and float(1 / scale).is_integer() and out_len * round(1 / scale) == length:
        phases, stride = 1, round(1 / scale)
    else:
        return None
    weights, raw = raw_contributions(length, out_len, scale)
    rel = raw - (np.arange(out_len) // phases * stride)[:, None]  # taps relative to the output's block
    lo = int(rel.min())
    kernel = np.zeros((phases, int(rel.max()) - lo + 1))
    for p in range(phases):
        rows = np.arange(p, out_len, phases)
        if np.ptp(rel[rows], axis=0).any() or not np.allclose(weights[rows], weights[rows[0]], atol=1e-12):
            return None  # not phase-periodic (cannot happen for MATLAB's kernel; checked anyway)
        kernel[p, rel[rows[0]] - lo] = weights[rows[0]]
    pad = max(0, -int(raw.min()), int(raw.max()) - (length - 1))
    if pad > length:
        return None
    kernel.setflags(write=False)
    return PolyphasePlan(kernel, phases, stride, lo + pad, pad)


GEMM_BLOCKS = 32  # output blocks per window (best of 16-128 for x2-x4 upscales and x1/4 downscales, one thread)


@dataclass(frozen=True)
class BandedPlan:
    """A polyphase axis as matrix products: window i of the symmetric-padded input,
    x_sym[start + i * step : start + i * step + window], times `banded` gives output rows
    [i * rows_per_window, (i + 1) * rows_per_window); the last window may run past the input (read
    zeros there) and past `out_len` (cropped). BLAS runs these GEMMs near its peak, where the same
    arithmetic as a convolution with one input channel or as strided slices does not."""

    banded: np.ndarray  # (rows_per_window, window) float64: the kernel repeated down a diagonal
    rows_per_window: int
    windows: int
    window: int
    step: int
    need: int  # padded length the windows read


@lru_cache(maxsize=256)
def banded_plan(length: int, out_len: int, scale: float, blocks: int = GEMM_BLOCKS) -> BandedPlan | None:
    plan = polyphase_plan(length, out_len, scale)
    if plan is None:
        return None
    phases, taps = plan.kernel.shape
    total = out_len // phases
    per = min(blocks, total)
    windows = -(-total // per)
    window = (per - 1) * plan.stride + taps
    banded = np.zeros((per * phases, window))
    for q in range(per):
        banded[q * phases : (q + 1) * phases, q * plan.stride : q * plan.stride + taps] = plan.kernel
    banded.setflags(write=False)
    step = per * plan.stride
    return BandedPlan(banded, per * phases, windows, window, step, (windows - 1) * step + window)


def _out_size(
    h: int, w: int, scale: float | None, size: tuple[int, int] | None
) -> tuple[int, int, float, float]:
    if size is not None:
        oh, ow = size
        return oh, ow, oh / h, ow / w
    assert scale is not None
    return math.ceil(h * scale), math.ceil(w * scale), scale, scale


def imresize(img: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) float array like MATLAB. Output is float64/32, not clipped."""
    if img.dtype == np.uint8:
        raise TypeError("pass float data; round the result yourself (MATLAB rounds uint8 inputs)")
    h, w = img.shape[:2]
    oh, ow, sh, sw = _out_size(h, w, scale, size)
    out = img
    # MATLAB resizes along the dimension with the smaller scale first
    order = (0, 1) if sh <= sw else (1, 0)
    for axis in order:
        length, out_len, s = (h, oh, sh) if axis == 0 else (w, ow, sw)
        plan, banded = polyphase_plan(length, out_len, s), banded_plan(length, out_len, s)
        if plan is None or banded is None:
            out = _resize_axis_gather(out, axis, length, out_len, s)
        else:
            out = _resize_axis_banded(out, axis, plan, banded, out_len)
    return out


def _resize_axis_gather(x: np.ndarray, axis: int, length: int, out_len: int, scale: float) -> np.ndarray:
    """Any factor: gather every output's taps (out_len x taps values), weight and sum."""
    weights, indices = contributions(length, out_len, scale)
    gathered = np.take(x, indices, axis=axis)  # axis expands to (out_len, taps)
    wshape = [1] * gathered.ndim
    wshape[axis], wshape[axis + 1] = weights.shape
    return (gathered * weights.reshape(wshape).astype(x.dtype)).sum(axis=axis + 1)


def _resize_axis_banded(x: np.ndarray, axis: int, plan: PolyphasePlan, banded: BandedPlan, out_len: int
                        ) -> np.ndarray:
    """Integer factors: one GEMM per window of output blocks (`BandedPlan`), written in place."""
    moved = np.moveaxis(x, axis, 0)
    rest = moved.shape[1:]
    flat = moved.reshape(moved.shape[0], -1)
    padded = np.concatenate([flat[: plan.pad][::-1], flat, flat[-plan.pad :][::-1]]) if plan.pad else flat
    padded = padded[plan.start : plan.start + banded.need]
    if padded.shape[0] < banded.need:  # the last window runs past the input: zeros, cropped below
        padded = np.concatenate([padded, np.zeros((banded.need - padded.shape[0], flat.shape[1]), flat.dtype)])
    weights = banded.banded.astype(x.dtype, copy=False)
    rows = banded.rows_per_window
    out = np.empty((banded.windows * rows, flat.shape[1]), dtype=x.dtype)
    for i in range(banded.windows):
        start = i * banded.step
        np.matmul(weights, padded[start : start + banded.window], out=out[i * rows : (i + 1) * rows])
    return np.moveaxis(out[:out_len].reshape(out_len, *rest), 0, axis)


def imresize_torch(x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The same resize on a (..., H, W) tensor, any device; weights in the tensor's dtype.

    The index/weight tables are cached per (shape, scale, device, dtype) in `model_store.fast_resize`:
    copying them to a GPU on every call would stall the stream.
    """
    from model_store.fast_resize import imresize_torch_cached

    return imresize_torch_cached(x, scale=scale, size=size)


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """HR float image -> LR float image, 8-bit rounded: how every eval set's LR was made."""
    lr = imresize(hr.astype(np.float64), scale=1.0 / scale)
    return np.clip(np.rint(lr * 255.0), 0, 255) / 255.0


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]
