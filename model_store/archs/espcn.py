"""ESPCN (Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network", CVPR 2016).

Y channel, all layers at LR resolution: 5x5 (64) - 3x3 (32) - 3x3 (scale^2) and a pixel shuffle.
The paper uses tanh activations; `activation="relu"` is the common variant.
"""

from __future__ import annotations

import torch
from torch import nn

from model_store.registry import register_arch


class ESPCN(nn.Module):
    supported_scales: tuple[int, ...] = (2, 3, 4)  # what the constructor accepts

    def __init__(self, *, scale: int, n1: int = 64, n2: int = 32, activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', not {activation!r}")
        self.scale = scale

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register_arch("espcn", channels="y")
def espcn(*, scale: int, n1: int = 64, n2: int = 32, activation: str = "tanh") -> nn.Module:
    return ESPCN(scale=scale, n1=n1, n2=n2, activation=activation)
