"""Bicubic interpolation (MATLAB kernel) as a parameter-free "network", so the baseline goes through
the same descriptor, tiling and batching path as every learned model."""

from __future__ import annotations

import torch
from torch import nn

from model_store.registry import register_arch
from model_store.resize import imresize_torch


class Bicubic(nn.Module):
    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return imresize_torch(x, scale=float(self.scale))

    def forward_with_scale(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return imresize_torch(x, scale=float(scale))


@register_arch("bicubic", channels="rgb", trainable=False)
def bicubic(*, scale: int) -> nn.Module:
    return Bicubic(scale)
