"""ESPCN (Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network", CVPR 2016).

Y channel, all layers at LR resolution: 5x5 (64) - 3x3 (32) - 3x3 (scale^2) and a pixel shuffle.
The paper uses tanh activations; `activation="relu"` is the common variant.

`residual=True` adds the bicubic upsampling of the input to the output, as our FSRCNN does: the paper's
layers learn only the missing detail and training starts at bicubic quality (the last layer starts near
zero). Without it (the paper's form, and the cards' default) our ESPCN x3/x4 stayed 0.8-0.9 dB under the
paper on Set5 after 100-150 k steps.
"""

from __future__ import annotations

import torch
from torch import nn

from model_store.fast_resize import imresize_torch_cached
from model_store.registry import register_arch


class ESPCN(nn.Module):
    supported_scales: tuple[int, ...] = (2, 3, 4)  # what the constructor accepts

    def __init__(
        self, *, scale: int, n1: int = 64, n2: int = 32, activation: str = "tanh", residual: bool = False
    ) -> None:
        super().__init__()
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', not {activation!r}")
        self.scale = scale
        self.residual = residual

        def act() -> nn.Module:
            return nn.Tanh() if activation == "tanh" else nn.ReLU(inplace=True)

        self.body = nn.Sequential(
            nn.Conv2d(1, n1, 5, padding=2),
            act(),
            nn.Conv2d(n1, n2, 3, padding=1),
            act(),
            nn.Conv2d(n2, scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )
        self.receptive_field = 2 + 1 + 1  # LR radius of 5x5, 3x3, 3x3
        self.size_multiple = 1
        if residual:  # start at bicubic: the detail branch begins near zero
            last = self.body[4]
            assert isinstance(last, nn.Conv2d)
            nn.init.normal_(last.weight, std=1e-3)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.residual:
            out = out + imresize_torch_cached(x, scale=float(self.scale))
        return out


@register_arch("espcn", channels="y")
def espcn(*, scale: int, n1: int = 64, n2: int = 32, activation: str = "tanh", residual: bool = False) -> nn.Module:
    return ESPCN(scale=scale, n1=n1, n2=n2, activation=activation, residual=residual)
