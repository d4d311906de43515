"""VDSR (Kim et al., "Accurate Image Super-Resolution Using Very Deep Convolutional Networks",
CVPR 2016).

20 3x3 conv layers (64 channels, ReLU) on the bicubic-upscaled Y channel, predicting the residual.
One network serves every scale (the paper's multi-scale training): the descriptor calls
`forward_with_scale(x, scale)`, which bicubic-upscales by that scale first.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model_store.archs.blocks import init_bicubic_residual
from model_store.fast_resize import imresize_torch_cached
from model_store.registry import register_arch

VDSR_SCALES = (2, 3, 4)


class VDSR(nn.Module):
    supported_scales: tuple[int, ...] = VDSR_SCALES
    multi_scale = True  # one set of weights serves every supported scale; training samples one per batch

    def __init__(self, *, scale: int, depth: int = 20, features: int = 64) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(1, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)
        # LR radius for the smallest scale (the widest in LR pixels), plus bicubic's 2-pixel support
        self.receptive_field = math.ceil(depth / min(self.supported_scales)) + 2
        self.size_multiple = 1
        init_bicubic_residual(self.body)  # start at the bicubic image

    def forward_with_scale(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        up = imresize_torch_cached(x, scale=float(scale))
        return up + self.body(up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_scale(x, self.scale)


@register_arch("vdsr", channels="y")
def vdsr(*, scale: int, depth: int = 20, features: int = 64) -> nn.Module:
    return VDSR(scale=scale, depth=depth, features=features)
