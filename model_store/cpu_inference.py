"""Rewrites of a loaded, frozen network for CPU inference: same operator, faster kernels.

- Transposed convolutions become sub-pixel convolutions (`model_store.subpixel`): PyTorch's CPU
  deconvolution takes a slow col2im path. FSRCNN then adds its bicubic skip to that convolution's output
  on the LR grid, before the pixel shuffle (`fast_resize.bicubic_phases`), not as a full-size resize and
  sum: 0.3 ms of FSRCNN x4's ~5.6 ms on a 120x80 input, one thread.
- tanh becomes 2·sigmoid(2x) − 1, computed in place: PyTorch's CPU tanh costs ~3× a sigmoid (AVX2,
  one thread: 3.6 vs 1.3 ms for ESPCN's 64×120×125 activation, a third of ESPCN's time); the two
  differ by < 2e-7. Where the tanh follows a convolution in a Sequential (ESPCN), the factor 2 goes
  into that convolution's weights and bias, and the sigmoid runs in place on its output: no
  temporary, one pass fewer (the x·2 pass was 6% of ESPCN x4 on BSD100). Where a convolution also
  follows it (both of ESPCN's), the layer computes sigmoid − 1/2 = tanh/2 and the factor 2 goes into
  the next convolution's weights: one pass fewer again (its zero padding still stands for tanh = 0).
- 1x1 convolutions get dilation 2, which changes nothing a 1x1 kernel computes (it has no taps to
  spread) but makes PyTorch hand them to oneDNN: for a batch under 16 on one thread it routes 1x1
  convolutions to its im2col + GEMM fallback instead, 2-3x slower on NHWC tensors (FSRCNN's 56 -> 12
  shrink on a 120x80 input 0.28 -> 0.11 ms, 64 -> 64 on 256x256 6.1 -> 2.5 ms; identical outputs).
- Pixel shuffles of channels_last (NHWC) tensors become one permuted copy of the NHWC memory:
  PyTorch's pixel_shuffle takes a generic path there, 2-3× slower for the s² → 1 channel shuffle
  that ends every Y-channel sub-pixel network (0.62 vs 0.31 ms for 16×128² → 512²). Same values
  (a copy), and the result keeps the layout the next layer wants.

Weight files are untouched (only the loaded module's doubled convolutions differ from them, so such a
module is for inference, not for saving); `load_descriptor` applies this on CPU only.

bf16 undoes the tanh rewrite's precision: sigmoid − 1/2 near 0 keeps only bf16's absolute resolution
around 1/2 (2^-9), which cost ESPCN x4 0.045 dB of Set5 (x2 0.18). A network with such a rewrite gets a
bf16 twin instead of running under autocast (`bf16_twin`): its weights in bf16 and each convolution +
tanh one oneDNN convolution with a tanh post-op, applied to the fp32 accumulator before the result is
rounded to bf16 — the precision of a bf16 tanh, at the speed of the rewritten network's one pass
(ESPCN x4 on 120x80, one thread, AVX512-BF16: fp32 2.18 ms, autocast 1.50 ms, twin 1.58 ms).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from model_store.subpixel import convert_deconvs, pixel_shuffle


class SigmoidTanh(nn.Module):
    """tanh(x) = 2·sigmoid(2x) − 1, for inference (in place on one temporary)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2.0
        return y.sigmoid_().mul_(2.0).sub_(1.0)


class NHWCPixelShuffle(nn.Module):
    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(x, self.scale)


def convert_pixel_shuffles(module: nn.Module) -> int:
    """Replace, in place, every nn.PixelShuffle under `module`; returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.PixelShuffle):
            setattr(module, name, NHWCPixelShuffle(child.upscale_factor))
            count += 1
        else:
            count += convert_pixel_shuffles(child)
    return count


class PrescaledSigmoidTanh(nn.Module):
    """tanh(z) from 2z (the convolution before it was doubled): 2·sigmoid(input) − 1, in place on the
    input, which only this layer reads."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sigmoid_().mul_(2.0).sub_(1.0)


class PrescaledHalfTanh(nn.Module):
    """tanh(z) / 2 from 2z: sigmoid(input) − 1/2 in place; the next convolution's weights were doubled."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sigmoid_().sub_(0.5)


@torch.no_grad()
def _double_conv(conv: nn.Conv2d, *, bias: bool = True) -> None:
    conv.weight.mul_(2.0)
    if bias and conv.bias is not None:
        conv.bias.mul_(2.0)


def convert_tanh(module: nn.Module) -> int:
    """Replace, in place, every nn.Tanh under `module`; returns how many. A tanh right after a Conv2d of
    the same Sequential takes that convolution's output doubled (`PrescaledSigmoidTanh`), and if a Conv2d
    follows it too, hands that one tanh / 2 (`PrescaledHalfTanh`)."""
    count = 0
    previous: nn.Module | None = None
    children = list(module.named_children())
    for i, (name, child) in enumerate(children):
        if isinstance(child, nn.Tanh):
            following = children[i + 1][1] if i + 1 < len(children) else None
            if isinstance(module, nn.Sequential) and isinstance(previous, nn.Conv2d):
                _double_conv(previous)
                if isinstance(following, nn.Conv2d) and following.padding_mode == "zeros":
                    _double_conv(following, bias=False)
                    setattr(module, name, PrescaledHalfTanh())
                else:
                    setattr(module, name, PrescaledSigmoidTanh())
            else:
                setattr(module, name, SigmoidTanh())
            count += 1
        else:
            count += convert_tanh(child)
        previous = child
    return count


def route_pointwise_convs_to_onednn(module: nn.Module) -> int:
    """Give every 1x1 Conv2d under `module` dilation 2 (see the module doc); returns how many."""
    count = 0
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.dilation == (1, 1):
            conv.dilation = (2, 2)
            count += 1
    return count


class FusedConvTanh(nn.Module):
    """A Conv2d and the tanh after it as one oneDNN convolution (eltwise post-op), in the weights' dtype."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not _fusable(conv):
            raise ValueError("only explicit zero padding fuses")
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False) if conv.bias is not None else None
        self.padding, self.stride, self.dilation = list(conv.padding), list(conv.stride), list(conv.dilation)
        self.groups = conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups, "tanh", [], ""
        )


def _fusable(conv: nn.Conv2d) -> bool:
    # oneDNN's convolution takes explicit zero padding only ("same" or reflect padding stay unfused)
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def fuse_conv_tanh(module: nn.Module) -> int:
    """Replace, in place, each Conv2d directly followed by a Tanh in a Sequential with one
    FusedConvTanh (the Tanh becomes an Identity); returns how many."""
    count = 0
    children = list(module.named_children())
    for i, (name, child) in enumerate(children):
        following = children[i + 1] if i + 1 < len(children) else None
        if (isinstance(module, nn.Sequential) and isinstance(child, nn.Conv2d) and following is not None
                and isinstance(following[1], nn.Tanh) and _fusable(child)):
            setattr(module, name, FusedConvTanh(child))
            setattr(module, following[0], nn.Identity())
            count += 1
        elif not isinstance(child, nn.Tanh):
            count += fuse_conv_tanh(child)
    return count


def bf16_twin(module: nn.Module) -> nn.Module | None:
    """A bf16 copy of an untouched, loaded network for bf16 inference on a CPU, where autocasting its
    rewritten (`prepare_for_cpu`) form loses precision: its tanh layers fused into the convolutions before
    them. None when it has no tanh to fuse: autocast on the rewritten module serves it as well."""
    if not any(isinstance(m, nn.Tanh) for m in module.modules()):
        return None  # nothing to fuse: no copy of the weights for every CPU load
    twin = copy.deepcopy(module)
    if not fuse_conv_tanh(twin):
        return None
    convert_deconvs(twin)
    convert_pixel_shuffles(twin)
    route_pointwise_convs_to_onednn(twin)
    return twin.to(dtype=torch.bfloat16, memory_format=torch.channels_last).eval().requires_grad_(False)


def prepare_for_cpu(module: nn.Module) -> dict[str, int]:
    """Apply every CPU rewrite to `module` in place; returns how many layers each one changed."""
    return {"deconv": convert_deconvs(module), "tanh": convert_tanh(module),
            "pixel_shuffle": convert_pixel_shuffles(module), "pointwise": route_pointwise_convs_to_onednn(module)}
