"""SRCNN (Dong et al., "Image Super-Resolution Using Deep Convolutional Networks", TPAMI 2016).

The 9-5-5 network with 64/32 filters on the Y channel. SRCNN is a pre-upsampling model: the paper
feeds it the bicubic-upscaled image. Here the module does that upscaling itself (MATLAB bicubic,
the eval kernel) so that, like every model, it maps LR -> HR. Convolutions are zero-padded ("same")
so the output is exactly input x scale; the paper trained without padding on 33x33 patches.
`residual=True` adds the bicubic image back to the output (the network learns the detail only):
the same layers, a much faster start with Adam; set it to False for the paper's plain mapping.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model_store.archs.blocks import init_bicubic_residual
from model_store.fast_resize import imresize_torch_cached
from model_store.registry import register_arch


class SRCNN(nn.Module):
    supported_scales: tuple[int, ...] = (2, 3, 4)  # what the constructor accepts

    def __init__(self, *, scale: int, f1: int = 9, f2: int = 5, f3: int = 5, n1: int = 64, n2: int = 32,
                 residual: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.residual = residual
        self.body = nn.Sequential(
            nn.Conv2d(1, n1, f1, padding=f1 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(n1, n2, f2, padding=f2 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(n2, 1, f3, padding=f3 // 2),
        )
        # context radius in LR pixels: the HR radius of the three convs, plus bicubic's 2-pixel support
        hr_radius = (f1 - 1) // 2 + (f2 - 1) // 2 + (f3 - 1) // 2
        self.receptive_field = math.ceil(hr_radius / scale) + 2
        self.size_multiple = 1
        init_bicubic_residual(self.body)  # paper: output layer initialised near zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = imresize_torch_cached(x, scale=float(self.scale))
        out = self.body(up)
        return out + up if self.residual else out


@register_arch("srcnn", channels="y")
def srcnn(*, scale: int, n1: int = 64, n2: int = 32, residual: bool = True) -> nn.Module:
    return SRCNN(scale=scale, n1=n1, n2=n2, residual=residual)
