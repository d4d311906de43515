"""`imresize_torch` with its tables cached on the device, and a convolution path for integer factors.

`model_store.resize.imresize_torch` would build the tables in numpy and copy them to the tensor's
device on every call; on CUDA each such copy synchronises the stream, which stalls a training loop
that resizes every batch. Here the copy happens once per shape.

Integer factors (upscaling by s, or antialiased downscaling by 1/s) - every resize in SR - take a
polyphase path: MATLAB's weights then depend only on the output pixel's phase (i mod s), and its
symmetric borders are a padding of the input, so each axis is one small strided convolution with
s output channels (one per phase) followed by an interleave. That replaces the gather of
(pixels x taps) values by a dense kernel the CPU vectorises: several times faster on CPU for the
chroma and the bicubic skip of every Y-channel model. Same kernel, same numbers (float rounding
aside); other factors and tiny inputs keep the gather path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model_store.resize import _out_size, contributions, raw_contributions

_TableKey = tuple[int, int, float, torch.device, torch.dtype]
_TABLES: dict[_TableKey, tuple[torch.Tensor, torch.Tensor]] = {}
_POLY: dict[_TableKey, _Polyphase | None] = {}


def _bounded_put(cache: dict, key: _TableKey, value: object) -> None:  # type: ignore[type-arg]
    if len(cache) > 1024:  # eval sets bring many shapes; keep the caches bounded
        cache.clear()
    cache[key] = value


def _tables(length: int, out_len: int, scale: float, device: torch.device, dtype: torch.dtype
            ) -> tuple[torch.Tensor, torch.Tensor]:
    key = (length, out_len, scale, device, dtype)
    hit = _TABLES.get(key)
    if hit is None:
        weights_np, indices_np = contributions(length, out_len, scale)
        hit = (torch.as_tensor(weights_np, dtype=dtype).to(device), torch.as_tensor(indices_np).to(device))
        _bounded_put(_TABLES, key, hit)
    return hit


@dataclass(frozen=True)
class _Polyphase:
    """One axis of an integer-factor resize as a convolution: out[q * phases + p] =
    sum_j kernel[p, j] * x_sym[q * stride + start + j], x_sym = x with `pad` symmetric pixels each side."""

    kernel: torch.Tensor  # (phases, taps)
    phases: int
    stride: int
    start: int  # first tap of output 0, in padded coordinates
    pad: int


def _polyphase_plan(length: int, out_len: int, scale: float) -> tuple[np.ndarray, int, int, int, int] | None:
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
    if pad > length:  # mirroring would wrap more than once: leave tiny inputs to the gather path
        return None
    return kernel, phases, stride, lo + pad, pad


def _polyphase(length: int, out_len: int, scale: float, device: torch.device, dtype: torch.dtype
               ) -> _Polyphase | None:
    key = (length, out_len, scale, device, dtype)
    if key not in _POLY:
        plan = _polyphase_plan(length, out_len, scale)
        value = None
        if plan is not None:
            kernel, phases, stride, start, pad = plan
            value = _Polyphase(torch.as_tensor(kernel, dtype=dtype).to(device), phases, stride, start, pad)
        _bounded_put(_POLY, key, value)
    return _POLY[key]


def _symmetric_pad_last(x: torch.Tensor, pad: int) -> torch.Tensor:
    if pad == 0:
        return x
    return torch.cat([x[..., :pad].flip(-1), x, x[..., -pad:].flip(-1)], dim=-1)


def _resize_last_axis(x: torch.Tensor, plan: _Polyphase, out_len: int) -> torch.Tensor:
    """Polyphase resize of the last axis of (..., L)."""
    lead = x.shape[:-1]
    padded = _symmetric_pad_last(x.reshape(-1, 1, x.shape[-1]), plan.pad)[..., plan.start :]
    out = F.conv1d(padded, plan.kernel[:, None, :], stride=plan.stride)  # (N, phases, blocks)
    blocks = out_len // plan.phases
    out = out[..., :blocks].transpose(1, 2).reshape(*lead, out_len)
    return out


def imresize_torch_cached(x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None
                          ) -> torch.Tensor:
    """MATLAB bicubic resize of a (..., H, W) tensor; the numbers of `model_store.resize.imresize`."""
    h, w = x.shape[-2:]
    oh, ow, sh, sw = _out_size(h, w, scale, size)
    out = x
    order = (-2, -1) if sh <= sw else (-1, -2)
    for dim in order:
        length, out_len, s = (h, oh, sh) if dim == -2 else (w, ow, sw)
        plan = _polyphase(length, out_len, s, out.device, out.dtype) if out.dtype.is_floating_point else None
        if plan is not None:
            if dim == -2:
                out = _resize_last_axis(out.transpose(-1, -2), plan, out_len).transpose(-1, -2)
            else:
                out = _resize_last_axis(out, plan, out_len)
            continue
        weights, indices = _tables(length, out_len, s, out.device, out.dtype)
        if dim == -2:
            out = (out[..., indices, :] * weights[..., None]).sum(dim=-2)
        else:
            out = (out[..., indices] * weights).sum(dim=-1)
    return out
