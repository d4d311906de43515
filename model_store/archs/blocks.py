"""Building blocks shared by several architectures (nothing registers here)."""

from __future__ import annotations

import torch
from torch import nn

# DIV2K RGB mean, as in the EDSR and SwinIR authors' code (std taken as 1): the fixed input/output shift of
# the RGB networks
DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)


class ResBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3 plus the identity; `res_scale` scales the residual (EDSR: 1.0 for the
    baseline, 0.1 for its wide model). State-dict keys: body.0.*, body.2.*."""

    def __init__(self, ch: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(ch, ch, 3, padding=1)
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        if self.res_scale != 1.0:
            res = res * self.res_scale
        return x + res


def init_bicubic_residual(body: nn.Sequential) -> None:
    """Kaiming (ReLU) for every convolution, the last one near zero: a network that adds its output
    to the bicubic image starts at the bicubic image (SRCNN, VDSR)."""
    for m in body:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    last = body[-1]
    assert isinstance(last, nn.Conv2d)
    nn.init.normal_(last.weight, std=1e-3)
