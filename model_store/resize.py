"""MATLAB-compatible bicubic `imresize` (antialiased when downscaling), numpy and torch.

Every published SR table makes its LR images with MATLAB's `imresize(HR, 1/s, 'bicubic')`, so
training, evaluation, LR-consistency and the `bicubic` model all use this one kernel. The resize is
separable: per axis we precompute, for each output index, the input indices it reads (with MATLAB's
symmetric border handling) and their weights, then gather and sum. That is O(taps x pixels), works
for any scale, and gives the same numbers in numpy (CPU) and torch (CPU/GPU).
"""

from __future__ import annotations

import math
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
        weights, indices = contributions(length, out_len, s)
        gathered = np.take(out, indices, axis=axis)  # axis expands to (out_len, taps)
        wshape = [1] * gathered.ndim
        wshape[axis], wshape[axis + 1] = weights.shape
        out = (gathered * weights.reshape(wshape).astype(out.dtype)).sum(axis=axis + 1)
    return out


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
