"""Classical burst super-resolution (no training): registration, robust shift-and-add, back-projection.

Frames come registered (model_store.burst.registration: sub-pixel shifts, outlier frames removed,
exposure normalised). Two ways to get the first HR estimate:
- `init="splat"`: robust shift-and-add. Every LR sample is splatted with a small Gaussian onto the HR
  grid at its sub-pixel position, weighted by its frame's confidence; one reweighting pass gives
  each sample a Cauchy weight from its residual against the first estimate (a splat-friendly
  stand-in for a per-pixel median, robust to local motion); holes are filled by a wider normalised
  convolution.
- `init="bicubic"` (default): the bicubic upsampling of the reference frame.
Then `bp_iters` gradient steps of iterative back-projection (Irani & Peleg 1991) with the known
forward operator (warp + antialiased bicubic downsampling) put the detail of every frame in. On
bursts from the training photos (x4, noise 2/255; not the eval sets) the bicubic start beat the
splatted one by 0.2-0.7 dB after back-projection (the Gaussian splat blurs, and with K < 8 leaves
holes), and 12 steps beat 20 or 40 (the step count is the regulariser). An unsharp mask
(`sharpen_amount` > 0) stays available for degradations that differ from the model; with
back-projection it did not help.

RGB in, RGB out.
"""

from __future__ import annotations

import torch
from torch import nn

from model_store.burst.fusion import back_project, fill_holes, hr_positions, splat, unsharp_mask
from model_store.registry import register_arch
from model_store.resize import imresize_torch


def sample_hr(img: torch.Tensor, shifts: torch.Tensor, h: int, w: int, scale: int) -> torch.Tensor:
    """Bilinearly read an HR image (B, C, H, W) at every LR sample's HR position -> (B, K, C, h, w)."""
    b, c, hh, ww = img.shape
    k = shifts.shape[1]
    ys, xs = hr_positions(h, w, shifts, scale)
    ys, xs = torch.broadcast_tensors(ys, xs)
    grid = torch.stack([(2 * xs + 1) / ww - 1, (2 * ys + 1) / hh - 1], dim=-1).reshape(b, k * h, w, 2)
    out = nn.functional.grid_sample(img.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(b, c, k, h, w).permute(0, 2, 1, 3, 4)


class ShiftAndAdd(nn.Module):
    uses_shifts = True

    def __init__(self, *, scale: int, sigma: float = 0.25, fill_sigma: float = 0.5, robust_c: float = 0.04,
                 sharpen_sigma: float = 0.375, sharpen_amount: float = 0.0, bp_iters: int = 12,
                 bp_step: float = 0.5, init: str = "bicubic") -> None:
        super().__init__()
        # the sigmas are given in LR pixels so one setting serves every scale
        self.scale = scale
        self.sigma = sigma * scale
        self.fill_sigma = fill_sigma * scale
        self.robust_c = robust_c
        self.sharpen_sigma = sharpen_sigma * scale
        self.sharpen_amount = sharpen_amount
        self.bp_iters = bp_iters
        self.bp_step = bp_step
        if init not in ("bicubic", "splat"):
            raise ValueError(f"init must be 'bicubic' or 'splat', not {init!r}")
        self.init = init
        self.receptive_field = 4
        self.size_multiple = 1

    def fuse(self, frames: torch.Tensor, shifts: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Robust shift-and-add with hole filling, no sharpening: (B, K, C, h, w) -> (B, C, H, W)."""
        b, k, _, h, w = frames.shape
        frame_w = frames.new_ones(b, k) if weights is None else weights.float()
        sample_w = frame_w[:, :, None, None, None].expand(b, k, 1, h, w)
        est = None
        for _ in range(2 if self.robust_c > 0 and k > 2 else 1):
            num, den = splat(frames, shifts, self.scale, sigma=self.sigma, radius=1, weights=sample_w)
            est = fill_holes(num, den, self.fill_sigma)
            if self.robust_c <= 0 or k <= 2:
                break
            resid = (frames.float() - sample_hr(est, shifts, h, w, self.scale)).abs().mean(dim=2, keepdim=True)
            sample_w = frame_w[:, :, None, None, None] / (1.0 + (resid / self.robust_c) ** 2)
        assert est is not None
        return est

    def forward(self, frames: torch.Tensor, shifts: torch.Tensor | None = None,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        if shifts is None:
            raise ValueError("shift-and-add needs the frames' shifts (register the burst first)")
        if self.init == "bicubic" or frames.shape[1] == 1:
            est = imresize_torch(frames[:, 0].float(), scale=float(self.scale))
        else:
            est = self.fuse(frames, shifts, weights)
        est = back_project(est, frames, shifts, self.scale, weights=weights, iters=self.bp_iters,
                           step=self.bp_step)
        if self.sharpen_amount > 0:
            est = unsharp_mask(est, self.sharpen_sigma, self.sharpen_amount)
        return est


@register_arch("burst_shift_add", channels="rgb", kind="burst", trainable=False)
def burst_shift_add(*, scale: int, sigma: float = 0.25, fill_sigma: float = 0.5, robust_c: float = 0.04,
                    sharpen_sigma: float = 0.375, sharpen_amount: float = 0.0, bp_iters: int = 12,
                    bp_step: float = 0.5, init: str = "bicubic") -> nn.Module:
    return ShiftAndAdd(scale=scale, sigma=sigma, fill_sigma=fill_sigma, robust_c=robust_c,
                       sharpen_sigma=sharpen_sigma, sharpen_amount=sharpen_amount, bp_iters=bp_iters,
                       bp_step=bp_step, init=init)
