"""LapSRN (Lai et al., "Deep Laplacian Pyramid Networks for Fast and Accurate Super-Resolution",
CVPR 2017).

Progressive x2 steps on the Y channel. Per pyramid level the feature-extraction branch runs d 3x3
convs (64 channels, LeakyReLU 0.2) and a 4x4 transposed conv (x2); a 3x3 conv turns the upsampled
features into a residual image that is added to the image-reconstruction branch (a 4x4 transposed
conv of the previous level's image, initialised bilinear). x2, x4 and x8 are separate networks
with 1, 2 and 3 levels. `forward` returns the last level; `forward_pyramid` returns every level
for the multi-scale Charbonnier loss of the paper. `shared=True` reuses one level's weights at
every level (the MS-LapSRN variant); the CVPR paper does not share.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model_store.registry import register_arch

LAPSRN_SCALES = (2, 4, 8)


def _bilinear_kernel(size: int) -> torch.Tensor:
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float32)
    filt = 1 - (og - center).abs() / factor
    return filt[:, None] * filt[None, :]


class _FeatureLevel(nn.Module):
    def __init__(self, depth: int, features: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.ConvTranspose2d(features, features, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LapSRN(nn.Module):
    supported_scales: tuple[int, ...] = LAPSRN_SCALES  # what the constructor accepts

    def __init__(self, *, scale: int, depth: int = 10, features: int = 64, shared: bool = False) -> None:
        super().__init__()
        if scale not in LAPSRN_SCALES:
            raise ValueError(f"LapSRN scale must be one of {LAPSRN_SCALES}, not {scale}")
        self.scale = scale
        self.levels = int(math.log2(scale))
        self.shared = shared
        self.conv_in = nn.Sequential(nn.Conv2d(1, features, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        n_own = 1 if shared else self.levels
        self.feature = nn.ModuleList(_FeatureLevel(depth, features) for _ in range(n_own))
        self.to_residual = nn.ModuleList(nn.Conv2d(features, 1, 3, padding=1) for _ in range(n_own))
        self.upsample_image = nn.ModuleList(
            nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1, bias=False) for _ in range(n_own)
        )
        # LR radius, summed level by level in LR units (level l runs at 2^(l-1) x LR resolution)
        radius = 1.0
        for level in range(self.levels):
            radius += (depth + 1) / 2**level + 1 / 2 ** (level + 1)  # d 3x3 convs + the 4x4 deconv
        self.receptive_field = math.ceil(radius) + 1
        self.size_multiple = 1
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and m.out_channels == features:
                nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for conv in self.to_residual:
            nn.init.normal_(conv.weight, std=1e-3)
            nn.init.zeros_(conv.bias)
        with torch.no_grad():
            for up in self.upsample_image:
                up.weight.copy_(_bilinear_kernel(4)[None, None])

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every level's output, x2 first: the training loss compares each with the HR downscaled."""
        feat = self.conv_in(x)
        image = x
        outputs = []
        for level in range(self.levels):
            i = 0 if self.shared else level
            feat = self.feature[i](feat)
            image = self.upsample_image[i](image) + self.to_residual[i](feat)
            outputs.append(image)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_pyramid(x)[-1]


@register_arch("lapsrn", channels="y")
def lapsrn(*, scale: int, depth: int = 10, features: int = 64, shared: bool = False) -> nn.Module:
    return LapSRN(scale=scale, depth=depth, features=features, shared=shared)
