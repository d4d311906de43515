"""Transposed convolutions rewritten as sub-pixel convolutions for inference.

A ConvTranspose2d with stride s computes, for output row o = q*s + p (phase p), a correlation of the
input around row q with the taps k = (p + padding) mod s, +s, +2s, ... of its kernel. Gathering those
taps per phase gives an ordinary convolution with s*s*C_out output channels on the LR grid, followed
by a pixel shuffle (Shi et al. 2016 showed the two are the same operator). Same numbers up to float
summation order, but a dense conv the CPU libraries (oneDNN) run well, where PyTorch's CPU transposed
conv falls back to a slow col2im path: FSRCNN's 9x9 stride-4 deconvolution was a third of its CPU
time. Weights and state dicts are untouched: this rewrites a loaded, frozen module for inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_store.fast_resize import bicubic_phases, imresize_torch_cached


def _phase_taps(kernel: int, stride: int, padding: int) -> tuple[list[tuple[int, list[tuple[int, int]]]], int, int]:
    """Per output phase p: [(j, k)]: output row q*s + p reads input row q + j through kernel tap k.
    Returns (per-phase lists, j_min, j_max)."""
    phases = []
    js: list[int] = []
    for p in range(stride):
        r, c = (p + padding) % stride, (p + padding) // stride
        taps = [(c - m, r + m * stride) for m in range((kernel - r + stride - 1) // stride)]
        phases.append((p, taps))
        js += [j for j, _ in taps]
    return phases, min(js), max(js)


def pixel_shuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """F.pixel_shuffle, as a single permuted copy when `x` is channels_last (NHWC memory)."""
    b, c, h, w = x.shape
    if c == 1 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return F.pixel_shuffle(x, scale)
    out_c = c // (scale * scale)
    nhwc = x.permute(0, 2, 3, 1).reshape(b, h, w, out_c, scale, scale)  # a view of the memory
    if out_c == 1:  # one output channel: NCHW and NHWC are the same memory
        return nhwc.permute(0, 3, 1, 4, 2, 5).reshape(b, 1, h * scale, w * scale)
    return nhwc.permute(0, 1, 4, 2, 5, 3).reshape(b, h * scale, w * scale, out_c).permute(0, 3, 1, 2)


class SubPixelDeconv(nn.Module):
    """Inference-only replacement of a ConvTranspose2d (groups = 1, dilation = 1, square stride)."""

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        (kh, kw), (sh, sw) = deconv.kernel_size, deconv.stride
        (ph, pw), (oph, opw) = deconv.padding, deconv.output_padding
        if deconv.groups != 1 or deconv.dilation != (1, 1) or sh != sw or kh != kw or ph != pw or oph != opw:
            raise ValueError("only square, ungrouped, undilated transposed convolutions are converted")
        s = sh
        w = deconv.weight.detach()  # (C_in, C_out, k, k)
        c_in, c_out = w.shape[:2]
        phases, j_min, j_max = _phase_taps(kh, s, ph)
        span = j_max - j_min + 1
        weight = w.new_zeros(c_out, s, s, c_in, span, span)
        for py, taps_y in phases:
            for px, taps_x in phases:
                for jy, ky in taps_y:
                    for jx, kx in taps_x:
                        weight[:, py, px, :, jy - j_min, jx - j_min] = w[:, :, ky, kx].t()
        self.register_buffer("weight", weight.reshape(c_out * s * s, c_in, span, span).contiguous())
        bias = deconv.bias.detach() if deconv.bias is not None else w.new_zeros(c_out)
        self.register_buffer("bias", bias.repeat_interleave(s * s).contiguous())
        self.stride, self.kernel, self.padding, self.output_padding = s, kh, ph, oph
        self.j_min, self.j_max = j_min, j_max

    def forward(self, x: torch.Tensor, bicubic_of: torch.Tensor | None = None) -> torch.Tensor:
        """The transposed convolution of `x`; plus, if given, the MATLAB-bicubic upscaling of the LR image
        `bicubic_of` (a residual skip), added on the LR grid before the pixel shuffle."""
        h, w = x.shape[-2:]
        s = self.stride
        out_h = (h - 1) * s - 2 * self.padding + self.kernel + self.output_padding
        out_w = (w - 1) * s - 2 * self.padding + self.kernel + self.output_padding
        if bicubic_of is not None:
            # the conv's LR block r is output pixels r*s .. r*s+s-1: the skip needs an output exactly s times x
            if (out_h, out_w) != (h * s, w * s) or tuple(bicubic_of.shape[-2:]) != (h, w):
                raise ValueError(f"a bicubic skip needs an output of exactly {s} times the input, not {out_h}x{out_w}")
            skip = bicubic_phases(bicubic_of, s)
            if skip is None:  # too small for MATLAB's mirroring as a convolution
                return self(x) + imresize_torch_cached(bicubic_of, scale=float(s))
        qh, qw = -(-out_h // s), -(-out_w // s)  # LR positions needed to cover the output
        # zero padding so that input rows q + j exist for q < q_out, j in [j_min, j_max]
        left = -self.j_min
        right_h, right_w = qh - 1 + self.j_max - (h - 1), qw - 1 + self.j_max - (w - 1)
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        if left >= 0 and right_h == left and right_w == left:  # the usual case: let the conv pad (no copy)
            out = F.conv2d(x, weight, bias, padding=left)
        else:
            out = F.conv2d(F.pad(x, (left, right_w, left, right_h)), weight, bias)
        if bicubic_of is not None:
            out += skip
        return pixel_shuffle(out, s)[..., :out_h, :out_w]


def convert_deconvs(module: nn.Module) -> int:
    """Replace, in place, every convertible ConvTranspose2d under `module`; returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.ConvTranspose2d):
            try:
                setattr(module, name, SubPixelDeconv(child))
                count += 1
            except ValueError:
                pass
        else:
            count += convert_deconvs(child)
    return count
