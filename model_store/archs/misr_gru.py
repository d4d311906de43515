"""MISR-GRU (Rifat Arefin et al., "Multi-Image Super-Resolution for Remote Sensing using Deep
Recurrent Networks", CVPR Workshops 2020), small.

A shared encoder sees every frame concatenated with the reference frame (so it can learn the
relative motion implicitly: no registration needed), a convolutional GRU runs over the frame
sequence, the hidden states are averaged over time (global temporal pooling, as in the paper), and a
residual decoder upsamples with a pixel shuffle onto a bicubic upsampling of the reference. Frame 0
is the reference. Rejected frames are dropped by the caller; `weights` only matter as 0/1 here.
RGB in, RGB out.
"""

from __future__ import annotations

import torch
from torch import nn

from model_store.archs.blocks import ResBlock
from model_store.fast_resize import imresize_torch_cached
from model_store.registry import register_arch


class ConvGRUCell(nn.Module):
    def __init__(self, in_ch: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.gates = nn.Conv2d(in_ch + hidden, 2 * hidden, kernel, padding=kernel // 2)
        self.cand = nn.Conv2d(in_ch + hidden, hidden, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        n = torch.tanh(self.cand(torch.cat([x, r * h], dim=1)))
        return (1 - z) * h + z * n


class MISRGRU(nn.Module):
    uses_shifts = False

    def __init__(self, *, scale: int, features: int = 64, enc_blocks: int = 2, dec_blocks: int = 2) -> None:
        super().__init__()
        self.scale = scale
        f = features
        self.encoder = nn.Sequential(
            nn.Conv2d(6, f, 3, padding=1), nn.PReLU(f), *[ResBlock(f) for _ in range(enc_blocks)]
        )
        self.gru = ConvGRUCell(f, f)
        self.decoder = nn.Sequential(
            *[ResBlock(f) for _ in range(dec_blocks)], nn.Conv2d(f, f, 3, padding=1), nn.PReLU(f)
        )
        self.upsample = nn.Sequential(nn.Conv2d(f, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        self.receptive_field = 1 + 2 * enc_blocks + 2 + 2 * dec_blocks + 2
        self.size_multiple = 1

    def forward(self, frames: torch.Tensor, shifts: torch.Tensor | None = None,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        b, k, c, h, w = frames.shape
        ref = frames[:, :1].expand(b, k, c, h, w)
        feats = self.encoder(torch.cat([frames, ref], dim=2).reshape(b * k, 2 * c, h, w)).reshape(b, k, -1, h, w)
        hidden = torch.zeros_like(feats[:, 0])
        acc = torch.zeros_like(hidden)
        total = frames.new_zeros(b, 1, 1, 1)
        for i in range(k):
            hidden = self.gru(feats[:, i], hidden)
            wi = frames.new_ones(b, 1, 1, 1) if weights is None else weights[:, i].to(frames.dtype).view(b, 1, 1, 1)
            acc = acc + wi * hidden
            total = total + wi
        fused = acc / total.clamp(min=1e-6)
        out = self.upsample(self.decoder(fused))
        return imresize_torch_cached(frames[:, 0].float(), scale=float(self.scale)) + out.float()


@register_arch("misr_gru", channels="rgb", kind="burst")
def misr_gru(*, scale: int, features: int = 64, enc_blocks: int = 2, dec_blocks: int = 2) -> nn.Module:
    return MISRGRU(scale=scale, features=features, enc_blocks=enc_blocks, dec_blocks=dec_blocks)
