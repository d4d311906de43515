"""Rewrites of a loaded, frozen network for CPU inference: same operator, faster kernels.

- Transposed convolutions become sub-pixel convolutions (`model_store.subpixel`): PyTorch's CPU
  deconvolution takes a slow col2im path. FSRCNN then adds its bicubic skip to that convolution's output
  on the LR grid, before the pixel shuffle (`fast_resize.bicubic_phases`), not as a full-size resize and
  sum: 0.3 ms of FSRCNN x4's ~5.6 ms on a 120x80 input, one thread.
- tanh becomes 2·sigmoid(2x) − 1, computed in place: PyTorch's CPU tanh costs ~3× a sigmoid (AVX2,
  one thread: 3.6 vs 1.3 ms for ESPCN's 64×120×125 activation, a third of ESPCN's time); the two
  differ by < 2e-7. Where the tanh follows a convolution in a Sequential (ESPCN), the factor 2 goes
  into that convolution's weights and bias, and the sigmoid runs in place on its output: no
  temporary, one pass fewer (the x·2 pass was 6% of ESPCN x4 on BSD100).
- Pixel shuffles of channels_last (NHWC) tensors become one permuted copy of the NHWC memory:
  PyTorch's pixel_shuffle takes a generic path there, 2-3× slower for the s² → 1 channel shuffle
  that ends every Y-channel sub-pixel network (0.62 vs 0.31 ms for 16×128² → 512²). Same values
  (a copy), and the result keeps the layout the next layer wants.

Weight files are untouched (only the loaded module's doubled convolutions differ from them, so such a
module is for inference, not for saving); `load_descriptor` applies this on CPU only.
"""

from __future__ import annotations

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


@torch.no_grad()
def _double_conv(conv: nn.Conv2d) -> None:
    conv.weight.mul_(2.0)
    if conv.bias is not None:
        conv.bias.mul_(2.0)


def convert_tanh(module: nn.Module) -> int:
    """Replace, in place, every nn.Tanh under `module`; returns how many. A tanh right after a Conv2d of
    the same Sequential takes that convolution's output doubled (`PrescaledSigmoidTanh`)."""
    count = 0
    previous: nn.Module | None = None
    for name, child in module.named_children():
        if isinstance(child, nn.Tanh):
            if isinstance(module, nn.Sequential) and isinstance(previous, nn.Conv2d):
                _double_conv(previous)
                setattr(module, name, PrescaledSigmoidTanh())
            else:
                setattr(module, name, SigmoidTanh())
            count += 1
        else:
            count += convert_tanh(child)
        previous = child
    return count


def prepare_for_cpu(module: nn.Module) -> dict[str, int]:
    """Apply every CPU rewrite to `module` in place; returns how many layers each one replaced."""
    return {"deconv": convert_deconvs(module), "tanh": convert_tanh(module),
            "pixel_shuffle": convert_pixel_shuffles(module)}
