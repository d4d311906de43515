"""Shift-and-pool burst SR in the style of HDR-DSP (Nguyen et al., "Self-supervised super-resolution
for multi-exposure push-frame satellites", CVPR 2022).

Per frame, a small residual encoder at LR. Its features are splatted (bilinear, differentiable in the
features) onto the HR grid at each frame's registered sub-pixel position - the feature-space
"shift-and-add". Across frames, a permutation-invariant pooling (weighted mean, max, std, plus the
sample density) gives a fixed-size HR feature map whatever the number of frames; a light HR conv
mixes it, a pixel-unshuffle moves it to LR for a residual body, and a pixel shuffle returns to HR.
The result is added to the classical normalised-convolution shift-and-add of the RGB samples, which
is itself permutation invariant. No input is treated as special: frames and their shifts can come in
any order (the reference frame only defines shift 0). Exposure is normalised before the network (see
model_store.burst.fusion.normalize_exposure). RGB in, RGB out.
"""

from __future__ import annotations

import torch
from torch import nn

from model_store.burst.fusion import fill_holes, splat
from model_store.registry import register_arch


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(ch, ch, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ShiftPool(nn.Module):
    uses_shifts = True

    def __init__(self, *, scale: int, enc_features: int = 32, enc_blocks: int = 3, body_features: int = 64,
                 body_blocks: int = 6) -> None:
        super().__init__()
        self.scale = scale
        f = enc_features
        self.encoder = nn.Sequential(nn.Conv2d(3, f, 3, padding=1), *[ResBlock(f) for _ in range(enc_blocks)])
        self.hr_mix = nn.Sequential(nn.Conv2d(3 * f + 1, f, 3, padding=1), nn.ReLU(inplace=True))
        self.to_body = nn.Sequential(nn.PixelUnshuffle(scale), nn.Conv2d(f * scale * scale, body_features, 1))
        self.body = nn.Sequential(*[ResBlock(body_features) for _ in range(body_blocks)])
        self.tail = nn.Sequential(nn.Conv2d(body_features, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        nn.init.zeros_(self.tail[0].weight)  # start as the classical shift-and-add
        nn.init.zeros_(self.tail[0].bias)
        self.receptive_field = 1 + enc_blocks * 2 + 1 + body_blocks * 2 + 1
        self.size_multiple = 1

    def base(self, frames: torch.Tensor, shifts: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """The classical shift-and-add (same kernel as burst_shift_add, no deblurring), in float32."""
        with torch.autocast(device_type=frames.device.type, enabled=False):
            num, den = splat(frames, shifts, self.scale, sigma=0.25 * self.scale, radius=1, weights=weights)
            return fill_holes(num, den, 0.5 * self.scale)

    def pool(self, feats: torch.Tensor, shifts: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """(B, K, F, h, w) -> (B, 3F + 1, H, W): mean, max and std over frames of the splatted features
        where each frame has samples, and the total sample density."""
        num, den = splat(feats, shifts, self.scale, weights=weights, per_frame=True)  # (B,K,F,H,W), (B,K,1,H,W)
        has = den > 1e-3
        val = num / den.clamp(min=1e-3)
        total = den.sum(dim=1)  # (B, 1, H, W)
        mean = num.sum(dim=1) / total.clamp(min=1e-3)
        var = (den * (val - mean[:, None]) ** 2).sum(dim=1) / total.clamp(min=1e-3)
        std = torch.sqrt(var + 1e-6)
        mx = torch.where(has, val, torch.full_like(val, -1e4)).amax(dim=1)
        mx = torch.where(total > 1e-3, mx, torch.zeros_like(mx))
        return torch.cat([mean, mx, std, total], dim=1)

    def forward(self, frames: torch.Tensor, shifts: torch.Tensor | None = None,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        if shifts is None:
            raise ValueError("shift-and-pool needs the frames' shifts (register the burst first)")
        b, k, c, h, w = frames.shape
        feats = self.encoder(frames.reshape(b * k, c, h, w)).reshape(b, k, -1, h, w)
        pooled = self.pool(feats, shifts, weights).to(feats.dtype)
        x = self.to_body(self.hr_mix(pooled))
        res = self.tail(self.body(x))
        return self.base(frames, shifts, weights) + res.float()


@register_arch("shift_pool", channels="rgb", kind="burst")
def shift_pool(*, scale: int, enc_features: int = 32, enc_blocks: int = 3, body_features: int = 64,
               body_blocks: int = 6) -> nn.Module:
    return ShiftPool(scale=scale, enc_features=enc_features, enc_blocks=enc_blocks,
                     body_features=body_features, body_blocks=body_blocks)
