"""Shift-and-pool burst SR in the style of HDR-DSP (Nguyen et al., "Self-supervised super-resolution
for multi-exposure push-frame satellites", CVPR 2022).

Per frame, a small residual encoder at LR. Its features are splatted (bilinear, differentiable in the
features) onto the HR grid at each frame's registered sub-pixel position - the feature-space
"shift-and-add". Across frames, a permutation-invariant pooling (weighted mean, max, std, plus the
sample density) gives a fixed-size HR feature map whatever the number of frames; a light HR conv
mixes it with the classical estimate (below), a pixel-unshuffle moves it to LR for a residual body,
and a pixel shuffle returns to HR. The network predicts a residual on a classical estimate, so it
starts (zero-initialised tail) exactly there:
the classical estimate: the normalised-convolution shift-and-add of the RGB samples, refined by
`bp_iters` steps of back-projection against every frame (the `shift_add` model's deblurring). The
learned part then only removes what the classical fusion leaves (noise, ringing, residual aliasing),
which a short training run can learn. The splat start (not `shift_add`'s bicubic of the reference)
keeps the whole model invariant to the frames' order.
No input is treated as special: frames and their shifts can come in any order (the reference frame
only defines shift 0). Exposure is normalised before the network (see
model_store.burst.fusion.normalize_exposure). RGB in, RGB out.
"""

from __future__ import annotations

import torch
from torch import nn

from model_store.archs.blocks import ResBlock
from model_store.burst.fusion import back_project, fill_holes, hr_positions, splat
from model_store.registry import register_arch


class ShiftPool(nn.Module):
    uses_shifts = True

    def __init__(self, *, scale: int, enc_features: int = 12, enc_blocks: int = 2, body_features: int = 64,
                 body_blocks: int = 6, bp_iters: int = 12) -> None:
        super().__init__()
        self.scale = scale
        self.bp_iters = bp_iters
        f = enc_features
        self.encoder = nn.Sequential(nn.Conv2d(3, f, 3, padding=1), *[ResBlock(f) for _ in range(enc_blocks)])
        # pooled features + the classical estimate itself (3 channels)
        self.hr_mix = nn.Sequential(nn.Conv2d(3 * f + 1 + 3, f, 3, padding=1), nn.ReLU(inplace=True))
        self.to_body = nn.Sequential(nn.PixelUnshuffle(scale), nn.Conv2d(f * scale * scale, body_features, 1))
        self.body = nn.Sequential(*[ResBlock(body_features) for _ in range(body_blocks)])
        self.tail = nn.Sequential(nn.Conv2d(body_features, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        nn.init.zeros_(self.tail[0].weight)  # start as the classical shift-and-add
        nn.init.zeros_(self.tail[0].bias)
        # back-projection reaches ~4 LR px (the shift_add card's figure) on top of the convolutions
        self.receptive_field = 1 + enc_blocks * 2 + 1 + body_blocks * 2 + 1 + (4 if bp_iters else 0)
        self.size_multiple = 1

    def base(self, frames: torch.Tensor, shifts: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """The classical estimate (no parameters, so no gradient), in float32."""
        with torch.no_grad(), torch.autocast(device_type=frames.device.type, enabled=False):
            num, den = splat(frames, shifts, self.scale, sigma=0.25 * self.scale, radius=1, weights=weights)
            start = fill_holes(num, den, 0.5 * self.scale)
            return back_project(start, frames, shifts, self.scale, weights=weights, iters=self.bp_iters)

    def pool(self, feats: torch.Tensor, shifts: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """(B, K, F, h, w) -> (B, 3F + 1, H, W): at every HR pixel, the mean, std and max of the frames'
        features that land there, and the sample density. Mean and std come from one bilinear splat of
        (features, features^2) summed over frames; the max from a scatter-amax at each sample's nearest
        HR pixel. All three are sums or maxima over samples, hence invariant to the frames' order, and
        they never materialise a per-frame HR grid (K times less memory and time than splatting each
        frame separately, which made CPU training impractical)."""
        b, k, f, h, w = feats.shape
        s = self.scale
        hh, ww = h * s, w * s
        num, den = splat(torch.cat([feats, feats * feats], dim=2), shifts, s, weights=weights)
        safe = den.clamp(min=1e-3)
        mean = num[:, :f] / safe
        std = torch.sqrt((num[:, f:] / safe - mean * mean).clamp(min=0.0) + 1e-6)
        ys, xs = hr_positions(h, w, shifts, s)
        iy, ix = torch.broadcast_tensors(torch.round(ys), torch.round(xs))  # (B, K, h, w)
        valid = (iy >= 0) & (iy < hh) & (ix >= 0) & (ix < ww)
        if weights is not None:  # rejected frames (weight 0) take no part in the max
            frame_w = weights.reshape(b, k, 1, 1) if weights.dim() == 2 else weights.reshape(b, k, h, w)
            valid = valid & (frame_w > 0)
        idx = (iy.clamp(0, hh - 1) * ww + ix.clamp(0, ww - 1)).long()
        vals = torch.where(valid[:, :, None], feats.float(), torch.full_like(feats.float(), -1e4))
        vals = vals.permute(0, 2, 1, 3, 4).reshape(b, f, k * h * w)
        mx = vals.new_full((b, f, hh * ww), -1e4)
        mx = mx.scatter_reduce(2, idx.reshape(b, 1, -1).expand(b, f, -1), vals, reduce="amax", include_self=True)
        mx = mx.reshape(b, f, hh, ww)
        mx = torch.where(mx > -1e3, mx, mean)  # no sample at this pixel: fall back to the mean
        return torch.cat([mean, mx, std, den], dim=1)

    def forward(self, frames: torch.Tensor, shifts: torch.Tensor | None = None,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        if shifts is None:
            raise ValueError("shift-and-pool needs the frames' shifts (register the burst first)")
        b, k, c, h, w = frames.shape
        feats = self.encoder(frames.reshape(b * k, c, h, w)).reshape(b, k, -1, h, w)
        base = self.base(frames, shifts, weights)
        pooled = torch.cat([self.pool(feats, shifts, weights), base], dim=1).to(feats.dtype)
        x = self.to_body(self.hr_mix(pooled))
        res = self.tail(self.body(x))
        return base + res.float()


@register_arch("shift_pool", channels="rgb", kind="burst")
def shift_pool(*, scale: int, enc_features: int = 12, enc_blocks: int = 2, body_features: int = 64,
               body_blocks: int = 6, bp_iters: int = 12) -> nn.Module:
    return ShiftPool(scale=scale, enc_features=enc_features, enc_blocks=enc_blocks,
                     body_features=body_features, body_blocks=body_blocks, bp_iters=bp_iters)
