"""FSRCNN (Dong et al., "Accelerating the Super-Resolution Convolutional Neural Network", ECCV 2016).

Post-upsampling on the Y channel: feature extraction (5x5, d), shrinking (1x1, s), m mapping layers
(3x3, s), expanding (1x1, d), all with PReLU, then a 9x9 deconvolution with stride = scale. Padding
4 and output_padding scale-1 make the output exactly (h*scale, w*scale). Paper setting d=56, s=12, m=4.

`residual=True` (our default, recorded in the card's `arch_args`) adds the bicubic upsampling of the
input to the deconvolution's output, so the network learns only the missing detail, as VDSR does.
The layers are the paper's; the skip makes short training runs start at bicubic quality instead of
below it (without it, minutes of CPU training ended under bicubic on every scale).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model_store.fast_resize import imresize_torch_cached
from model_store.registry import register_arch
from model_store.subpixel import SubPixelDeconv


class FSRCNN(nn.Module):
    supported_scales: tuple[int, ...] = (2, 3, 4)  # what the constructor accepts

    def __init__(self, *, scale: int, d: int = 56, s: int = 12, m: int = 4, residual: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.residual = residual
        layers: list[nn.Module] = [nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d)]
        layers += [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, 1, 9, stride=scale, padding=4, output_padding=scale - 1)
        # LR radius: 5x5 + m 3x3 convs, then the deconv's 9-tap footprint seen from the LR grid
        self.receptive_field = 2 + m + math.ceil(4 / scale) + 1
        self.size_multiple = 1
        for mod in self.body:
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.deconv.weight, std=1e-3)  # paper: deconv initialised from N(0, 0.001)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        if self.residual and isinstance(self.deconv, SubPixelDeconv):  # CPU inference (model_store.cpu_inference)
            return self.deconv(features, bicubic_of=x)  # the skip added on the LR grid, before the shuffle
        out = self.deconv(features)
        if self.residual:
            out = out + imresize_torch_cached(x, scale=float(self.scale))
        return out


@register_arch("fsrcnn", channels="y")
def fsrcnn(*, scale: int, d: int = 56, s: int = 12, m: int = 4, residual: bool = True) -> nn.Module:
    return FSRCNN(scale=scale, d=d, s=s, m=m, residual=residual)
