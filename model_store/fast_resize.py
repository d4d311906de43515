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

On CPU the polyphase axis is computed as matrix products instead (`model_store.resize.banded_plan`):
32 consecutive output blocks read one window of the padded input, so each window times one small
banded matrix (the kernel repeated along its diagonal) is a GEMM. oneDNN runs the convolution above
(1 input channel, s output channels) far below its peak; MKL runs these GEMMs near it: 2.5-5x
faster for every shape measured (128² and 270x480 at x4, 64² tiles in batches, x1/4 downscales),
identical numbers. Blocks, not one dense matrix per axis, keep the work linear in the image width.
CPU upscales by 3 or more go one step further (`_upscale_by_phases`): all s*s phases of both axes at once,
as one NHWC convolution on the LR grid, then one interleaving copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F

from model_store.resize import BandedPlan, PolyphasePlan, _out_size, banded_plan, contributions, polyphase_plan

_TableKey = tuple[int, int, float, torch.device, torch.dtype]
_Plan = TypeVar("_Plan", PolyphasePlan, BandedPlan)
_TABLES: dict[_TableKey, tuple[torch.Tensor, torch.Tensor]] = {}
_POLY: dict[_TableKey, tuple[PolyphasePlan, torch.Tensor] | None] = {}
_BANDED: dict[_TableKey, tuple[BandedPlan, torch.Tensor] | None] = {}
CPU_GEMM = True  # False: the strided convolution on CPU too, no GEMMs or phases (benchmarks compare)
# CPU upscales by an integer factor at least this take `bicubic_phases` and one interleaving copy, not two
# banded-GEMM passes (one thread, between network calls as in a job: a BSD100 image's chroma at x4
# 0.53 -> 0.32 ms); at x2 the four phases leave the interleaving copy the larger cost (slower there)
PHASES_MIN_SCALE = 3


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


def _on_device(cache: dict, make_plan: Callable[[int, int, float], _Plan | None], matrix: str,  # type: ignore[type-arg]
               key: _TableKey) -> tuple[_Plan, torch.Tensor] | None:
    """A shared plan (numpy, cached) and its `matrix` field as a tensor on the device, once per shape."""
    if key not in cache:
        length, out_len, scale, device, dtype = key
        plan = make_plan(length, out_len, scale)
        value = None if plan is None else (plan, torch.tensor(getattr(plan, matrix), dtype=dtype, device=device))
        _bounded_put(cache, key, value)
    return cache[key]


def _polyphase(length: int, out_len: int, scale: float, device: torch.device, dtype: torch.dtype
               ) -> tuple[PolyphasePlan, torch.Tensor] | None:
    return _on_device(_POLY, polyphase_plan, "kernel", (length, out_len, scale, device, dtype))


def _banded(length: int, out_len: int, scale: float, device: torch.device, dtype: torch.dtype
            ) -> tuple[BandedPlan, torch.Tensor] | None:
    return _on_device(_BANDED, banded_plan, "banded", (length, out_len, scale, device, dtype))


def _symmetric_pad_last(x: torch.Tensor, pad: int) -> torch.Tensor:
    if pad == 0:
        return x
    return torch.cat([x[..., :pad].flip(-1), x, x[..., -pad:].flip(-1)], dim=-1)


def _resize_last_axis(x: torch.Tensor, planned: tuple[PolyphasePlan, torch.Tensor], out_len: int) -> torch.Tensor:
    """Polyphase resize of the last axis of (..., L): a strided conv1d with one output per phase."""
    plan, kernel = planned
    lead = x.shape[:-1]
    padded = _symmetric_pad_last(x.reshape(-1, 1, x.shape[-1]), plan.pad)[..., plan.start :]
    out = F.conv1d(padded, kernel[:, None, :], stride=plan.stride)  # (N, phases, blocks)
    blocks = out_len // plan.phases
    return out[..., :blocks].transpose(1, 2).reshape(*lead, out_len)


def _resize_axis_gemm(x: torch.Tensor, plan: PolyphasePlan, planned: tuple[BandedPlan, torch.Tensor], out_len: int,
                      dim: int) -> torch.Tensor:
    """Polyphase resize of axis `dim` (-1 or -2) as one GEMM per window (`model_store.resize.BandedPlan`)."""
    bp, banded = planned
    length = x.shape[dim]
    padded = torch.cat([x.narrow(dim, 0, plan.pad).flip(dim), x, x.narrow(dim, length - plan.pad, plan.pad).flip(dim)],
                       dim=dim) if plan.pad else x
    padded = padded.narrow(dim, plan.start, min(bp.need, padded.shape[dim] - plan.start))
    if padded.shape[dim] < bp.need:  # the last window runs past the input: zeros, cropped from the output below
        tail = list(padded.shape)
        tail[dim] = bp.need - padded.shape[dim]
        padded = torch.cat([padded, padded.new_zeros(tail)], dim=dim)
    starts = [i * bp.step for i in range(bp.windows)]
    if dim == -1:
        rows = padded.reshape(-1, bp.need)
        out = torch.cat([rows[:, i : i + bp.window] @ banded.T for i in starts], dim=1)
        return out[:, :out_len].reshape(*x.shape[:-1], out_len)
    cols = padded.reshape(-1, bp.need, x.shape[-1])
    out = torch.cat([torch.matmul(banded, cols[:, i : i + bp.window]) for i in starts], dim=1)
    return out[:, :out_len].reshape(*x.shape[:-2], out_len, x.shape[-1])


def imresize_torch_cached(x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None
                          ) -> torch.Tensor:
    """MATLAB bicubic resize of a (..., H, W) tensor; the numbers of `model_store.resize.imresize`."""
    h, w = x.shape[-2:]
    oh, ow, sh, sw = _out_size(h, w, scale, size)
    if (CPU_GEMM and x.device.type == "cpu" and x.dtype.is_floating_point and sh == sw and sh >= PHASES_MIN_SCALE
            and sh == int(sh) and (oh, ow) == (h * int(sh), w * int(sh))):
        upscaled = _upscale_by_phases(x, int(sh))
        if upscaled is not None:
            return upscaled
    out = x
    order = (-2, -1) if sh <= sw else (-1, -2)
    for dim in order:
        length, out_len, s = (h, oh, sh) if dim == -2 else (w, ow, sw)
        planned = _polyphase(length, out_len, s, out.device, out.dtype) if out.dtype.is_floating_point else None
        on_cpu = CPU_GEMM and out.device.type == "cpu"
        gemm = _banded(length, out_len, s, out.device, out.dtype) if planned is not None and on_cpu else None
        if planned is not None and gemm is not None:
            out = _resize_axis_gemm(out, planned[0], gemm, out_len, dim)
            continue
        if planned is not None:
            if dim == -2:
                out = _resize_last_axis(out.transpose(-1, -2), planned, out_len).transpose(-1, -2)
            else:
                out = _resize_last_axis(out, planned, out_len)
            continue
        weights, indices = _tables(length, out_len, s, out.device, out.dtype)
        if dim == -2:
            out = (out[..., indices, :] * weights[..., None]).sum(dim=-2)
        else:
            out = (out[..., indices] * weights).sum(dim=-1)
    return out


_PHASE_KERNELS: dict[_TableKey, tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = {}


def _symmetric_indices(length: int, first: int, count: int) -> torch.Tensor:
    """Input indices of MATLAB's symmetric (edge-repeating) extension at positions first .. first+count-1."""
    mirror = torch.cat([torch.arange(length), torch.arange(length - 1, -1, -1)])
    return mirror[torch.arange(first, first + count) % (2 * length)]


def _phase_tables(h: int, w: int, scale: int, device: torch.device, dtype: torch.dtype
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The 2-D kernel (s*s, 1, taps_h, taps_w) of `bicubic_phases` and the rows / columns of the input it
    reads (the symmetric extension, gathered once)."""
    key = (h, w, float(scale), device, dtype)
    if key not in _PHASE_KERNELS:
        value = None
        plans = polyphase_plan(h, h * scale, scale), polyphase_plan(w, w * scale, scale)
        if plans[0] is not None and plans[1] is not None:
            (ph, pw) = plans
            kernel = torch.einsum("pi,qj->pqij", torch.tensor(ph.kernel), torch.tensor(pw.kernel))
            rows = _symmetric_indices(h, ph.start - ph.pad, h + ph.kernel.shape[1] - 1)
            cols = _symmetric_indices(w, pw.start - pw.pad, w + pw.kernel.shape[1] - 1)
            value = (kernel.reshape(scale * scale, 1, *kernel.shape[2:]).to(device, dtype).contiguous(),
                     rows.to(device), cols.to(device))
        _bounded_put(_PHASE_KERNELS, key, value)
    return _PHASE_KERNELS[key]


def bicubic_phases(x: torch.Tensor, scale: int) -> torch.Tensor | None:
    """MATLAB's bicubic upscaling of (B, C, h, w) by an integer `scale`, left on the LR grid as phases:
    (B, C*s*s, h, w), channel c*s*s + py*s + px holding output pixel (q*s + py, r*s + px) of channel c,
    the layout `pixel_shuffle` interleaves. A sub-pixel network adds it to its last convolution's output
    before that shuffle, instead of resizing to full size and adding there (one full-size pass and one
    full-size temporary fewer: FSRCNN x4 on a 120x80 input, 5.6 -> 5.3 ms, one thread).
    None where MATLAB's resize is no polyphase convolution (inputs too small for its mirroring)."""
    c, h, w = x.shape[1:]
    tables = _phase_tables(h, w, scale, x.device, x.dtype)
    if tables is None:
        return None
    kernel, rows, cols = tables
    # NHWC, the layout of the sub-pixel convolution it is added to (the sum then reads both in one order);
    # oneDNN also runs this grouped convolution 2x faster in it (2x120x80 at x4: 0.22 -> 0.10 ms)
    extended = x.index_select(-2, rows).index_select(-1, cols).contiguous(memory_format=torch.channels_last)
    weight = kernel if c == 1 else kernel.repeat(c, 1, 1, 1)
    return F.conv2d(extended, weight.contiguous(memory_format=torch.channels_last), groups=c)


def _upscale_by_phases(x: torch.Tensor, scale: int) -> torch.Tensor | None:
    """`imresize_torch_cached` for an integer upscale of a (..., h, w) tensor: the phases of
    `bicubic_phases` (NHWC: the s*s phases of a pixel side by side) interleaved into (..., h*s, w*s) by
    one copy."""
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    planes = x if x.dim() == 4 else x.reshape(-1, 1, h, w)
    phases = bicubic_phases(planes, scale)
    if phases is None:
        return None
    b, c = planes.shape[:2]
    # (b, c*s*s, h, w) in NHWC memory is (b, h, w, c, s, s); the output wants (b, c, h, s, w, s)
    grid = phases.permute(0, 2, 3, 1).reshape(b, h, w, c, scale, scale).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(*lead, h * scale, w * scale)
