"""SRResNet and the SRGAN discriminator (Ledig et al., "Photo-Realistic Single Image Super-Resolution
Using a Generative Adversarial Network", CVPR 2017).

Generator as in the paper: 9x9 conv + PReLU, 16 residual blocks (conv-BN-PReLU-conv-BN), conv-BN and
a long skip, then one conv + pixel-shuffle x2 + PReLU stage per factor of 2 (one x3 stage for x3), and
a 9x9 output conv. Data are RGB in [0, 1] in and out (the paper maps HR to [-1, 1]; a linear output
on [0, 1] is the same model up to an affine change of the last layer). `mean_shift=True` (our default)
subtracts the DIV2K RGB mean at the input and adds it back at the output, as EDSR does, and the output
conv starts 10x smaller: the untrained network predicts a flat mean-grey image instead of noise of unit
scale. Both are fixed (no parameters; the mean is a buffer saved with the weights, so `srserve models add`
tells the variants apart). Why: the paper's plain start learns slowly at first: 1.8 k steps on a GPU ended
below bicubic. On CPU (x4, batch 8 of 96 px, lr 4e-4, still in warm-up), Set5 after 100 steps was 14.9 dB
plain, 21.2 dB with the shift, 23.7 dB for EDSR-baseline; after 190 steps 23.0 dB with the shift (plain
17.2 dB after 139). SRGAN (`srgan_x4`) is this generator fine-tuned adversarially, so it shares the
`srresnet` architecture id.

The discriminator is not a servable model and is not registered; `model_store.train_gan` uses it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model_store.archs.blocks import DIV2K_RGB_MEAN
from model_store.registry import register_arch


class _ResidualBlock(nn.Module):
    def __init__(self, num_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False),  # BN follows: a bias would be redundant
            nn.BatchNorm2d(num_feat),
            nn.PReLU(num_feat),
            nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False),
            nn.BatchNorm2d(num_feat),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _upsample_stages(scale: int, num_feat: int) -> nn.Sequential:
    if scale & (scale - 1) == 0:
        factors = [2] * int(math.log2(scale))
    elif scale == 3:
        factors = [3]
    else:
        raise ValueError(f"scale {scale} is not supported (use 2, 3, 4 or 8)")
    layers: list[nn.Module] = []
    for f in factors:
        layers += [nn.Conv2d(num_feat, num_feat * f * f, 3, 1, 1), nn.PixelShuffle(f), nn.PReLU(num_feat)]
    return nn.Sequential(*layers)


class SRResNet(nn.Module):
    def __init__(
        self, *, scale: int, num_feat: int = 64, num_block: int = 16, num_ch: int = 3, mean_shift: bool = True
    ) -> None:
        super().__init__()
        self.scale = scale
        self.mean_shift = mean_shift
        if mean_shift:  # saved with the weights: `srserve models add` tells the two variants apart by it
            self.register_buffer("mean", torch.tensor(DIV2K_RGB_MEAN[:num_ch]).view(1, num_ch, 1, 1))
        self.head = nn.Sequential(nn.Conv2d(num_ch, num_feat, 9, 1, 4), nn.PReLU(num_feat))
        self.body = nn.Sequential(*[_ResidualBlock(num_feat) for _ in range(num_block)])
        self.body_tail = nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False), nn.BatchNorm2d(num_feat))
        self.upsample = _upsample_stages(scale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_ch, 9, 1, 4)
        # theoretical radius in LR pixels (BN is affine at inference, so tiles with this overlap are exact)
        n_up = sum(isinstance(m, nn.PixelShuffle) for m in self.upsample)
        self.receptive_field = 4 + 2 * num_block + 1 + n_up + math.ceil(4 / scale)
        self.size_multiple = 1
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.25, nonlinearity="leaky_relu")  # PReLU starts at 0.25
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # small residual branches at start: a deep residual stack then begins close to identity
        for block in self.body:
            assert isinstance(block, _ResidualBlock)
            nn.init.constant_(block.body[4].weight, 0.1)
        if self.mean_shift:  # start from the mean image: no output noise of unit scale to unlearn first
            self.conv_last.weight.data.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean_shift:
            x = x - self.mean.to(x.dtype)
        feat = self.head(x)
        feat = feat + self.body_tail(self.body(feat))
        out = self.conv_last(self.upsample(feat))
        return out + self.mean.to(out.dtype) if self.mean_shift else out


class SRGANDiscriminator(nn.Module):
    """The paper's VGG-style discriminator: 8 conv layers (64→512 channels, stride 2 every other layer,
    BN after all but the first, LeakyReLU 0.2), then Dense(1024)-LeakyReLU-Dense(1).

    The paper flattens a 6x6 map from 96 px patches; an adaptive average pool to 6x6 keeps that head
    for any patch size. `forward_features` also returns the output of each of the 4 stride stages,
    which SRGAN fine-tuning uses as the content (feature-matching) space in place of VGG.
    """

    def __init__(self, *, num_ch: int = 3, num_feat: int = 64) -> None:
        super().__init__()
        chans = [num_feat, num_feat * 2, num_feat * 4, num_feat * 8]
        stages: list[nn.Module] = []
        in_ch = num_ch
        for i, ch in enumerate(chans):
            layers: list[nn.Module] = [nn.Conv2d(in_ch, ch, 3, 1, 1, bias=i == 0)]
            if i > 0:
                layers.append(nn.BatchNorm2d(ch))
            layers += [
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ch, ch, 3, 2, 1, bias=False),
                nn.BatchNorm2d(ch),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            stages.append(nn.Sequential(*layers))
            in_ch = ch
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(chans[-1] * 36, 1024), nn.LeakyReLU(0.2, inplace=True), nn.Linear(1024, 1)
        )

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats: list[torch.Tensor] = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return self.head(self.pool(x)).squeeze(1), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


@register_arch("srresnet", channels="rgb")
def srresnet(*, scale: int, num_feat: int = 64, num_block: int = 16, mean_shift: bool = True) -> nn.Module:
    return SRResNet(scale=scale, num_feat=num_feat, num_block=num_block, mean_shift=mean_shift)
