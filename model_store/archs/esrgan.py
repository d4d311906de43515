"""RRDBNet, the ESRGAN / Real-ESRGAN generator (Wang et al., "ESRGAN: Enhanced Super-Resolution
Generative Adversarial Networks", ECCVW 2018; "Real-ESRGAN", ICCVW 2021).

Here to run users' third-party checkpoints (`srserve models add`); we do not train it. Parameter
names are the current (BasicSR / Real-ESRGAN) ones: `conv_first`, `body.N.rdbK.convM`, `conv_body`,
`conv_upK`, `conv_hr`, `conv_last`; `model_store.user_models` renames the old ESRGAN keys
(`model.0`, `model.1.sub.N.RDBK.convM.0`, ...) to these.

Each up stage is nearest x2 + conv + LeakyReLU. Real-ESRGAN's x2 (x1) models keep the two x4 stages
and pixel-unshuffle the input by 2 (4) first, so `conv_first` sees 12 (48) channels:
scale = 2 ** num_upsample / unshuffle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_store.registry import register_arch

# Effective context is far smaller than the 23 x 15 convolutions suggest; Real-ESRGAN tiles with
# 10 px of padding. Tiled output is close to, not bit-equal to, untiled output.
TILE_OVERLAP_LR = 24


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x  # residual scaling 0.2, as the paper


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    supported_scales: tuple[int, ...] = (2, 4)  # with the default two up stages (x8 needs num_upsample=3)

    def __init__(
        self, *, scale: int, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32, num_upsample: int = 2
    ) -> None:
        super().__init__()
        if (2**num_upsample) % scale:
            raise ValueError(f"scale {scale} is not 2**num_upsample / (1, 2 or 4) with num_upsample={num_upsample}")
        self.scale = scale
        self.unshuffle = 2**num_upsample // scale
        if self.unshuffle not in (1, 2, 4):
            raise ValueError(f"scale {scale} needs a pixel-unshuffle of {self.unshuffle}; only 1, 2 and 4 exist")
        self.num_upsample = num_upsample
        self.conv_first = nn.Conv2d(3 * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        for i in range(1, num_upsample + 1):
            self.add_module(f"conv_up{i}", nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self.receptive_field = TILE_OVERLAP_LR
        self.size_multiple = self.unshuffle  # pixel-unshuffle needs H and W divisible by it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        for i in range(1, self.num_upsample + 1):
            conv = getattr(self, f"conv_up{i}")
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


@register_arch("esrgan", channels="rgb", trainable=False)
def esrgan(
    *, scale: int, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32, num_upsample: int = 2
) -> nn.Module:
    """Defaults are ESRGAN / Real-ESRGAN x4plus (16.7 M parameters)."""
    return RRDBNet(
        scale=scale, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch, num_upsample=num_upsample
    )
