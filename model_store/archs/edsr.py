"""EDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution", CVPRW 2017).

EDSR-baseline: 16 residual blocks x 64 channels, conv-ReLU-conv without batch-norm, residual scaling
1.0 (the paper uses 0.1 only for the big 32x256 model), DIV2K RGB mean subtracted at the input and
added back at the output, a pixel-shuffle upsampler (x2, x3, or two x2 stages for x4).

Module and parameter names follow the authors' code (`sub_mean`, `head`, `body.N.body.0`, `tail.0.0`,
`add_mean`), so their released checkpoints load as users' models; those expect pixel values in
[0, 255], which `img_range=255` reproduces (read off `sub_mean.bias` when detecting them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model_store.archs.blocks import DIV2K_RGB_MEAN, ResBlock
from model_store.registry import register_arch


class MeanShift(nn.Module):
    """Adds `sign * img_range * mean`: a fixed 1x1 conv kept as buffers (not trained, zero parameters)."""

    def __init__(self, img_range: float, sign: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.eye(3).view(3, 3, 1, 1))
        self.register_buffer("bias", sign * img_range * torch.tensor(DIV2K_RGB_MEAN))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


def _upsampler(scale: int, num_feat: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0:
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"scale {scale} is not supported (use 2, 3, 4 or 8)")
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    def __init__(
        self,
        *,
        scale: int,
        num_feat: int = 64,
        num_block: int = 16,
        res_scale: float = 1.0,
        img_range: float = 1.0,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.img_range = img_range
        self.sub_mean = MeanShift(img_range, -1)
        self.head = nn.Sequential(nn.Conv2d(3, num_feat, 3, 1, 1))
        self.body = nn.Sequential(
            *[ResBlock(num_feat, res_scale) for _ in range(num_block)],
            nn.Conv2d(num_feat, num_feat, 3, 1, 1),
        )
        self.tail = nn.Sequential(_upsampler(scale, num_feat), nn.Conv2d(num_feat, 3, 3, 1, 1))
        self.add_mean = MeanShift(img_range, 1)
        n_up = sum(isinstance(m, nn.PixelShuffle) for m in self.tail[0])
        # theoretical radius in LR pixels: head + 2 per block + body conv + upsampler convs + last conv
        self.receptive_field = 1 + 2 * num_block + 1 + n_up + 1
        self.size_multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.img_range != 1.0:
            x = x * self.img_range
        x = self.head(self.sub_mean(x))
        x = x + self.body(x)
        x = self.add_mean(self.tail(x))
        return x / self.img_range if self.img_range != 1.0 else x


@register_arch("edsr", channels="rgb")
def edsr(
    *, scale: int, num_feat: int = 64, num_block: int = 16, res_scale: float = 1.0, img_range: float = 1.0
) -> nn.Module:
    return EDSR(scale=scale, num_feat=num_feat, num_block=num_block, res_scale=res_scale, img_range=img_range)
