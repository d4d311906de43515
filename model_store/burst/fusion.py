"""Fusion helpers shared by the burst architectures: splatting LR samples onto the HR grid at their
registered sub-pixel positions, Gaussian blurs / normalised convolution, unsharp masking, exposure
normalisation and aligning a frame onto the reference grid. Pure torch, any device.

Geometry (see model_store.burst): LR pixel i of a frame with shift d shows the reference's content at
LR position i - d, which sits at HR position (i - d + 0.5) * s - 0.5 on the output grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def hr_positions(h: int, w: int, shifts: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HR coordinates of every LR sample: shifts (B, K, 2) -> ys (B, K, h, 1), xs (B, K, 1, w)."""
    dev = shifts.device
    iy = torch.arange(h, device=dev, dtype=torch.float32)
    ix = torch.arange(w, device=dev, dtype=torch.float32)
    ys = (iy[None, None, :, None] - shifts[..., 0, None, None].float() + 0.5) * scale - 0.5
    xs = (ix[None, None, None, :] - shifts[..., 1, None, None].float() + 0.5) * scale - 0.5
    return ys, xs


def splat(values: torch.Tensor, shifts: torch.Tensor, scale: int, *, sigma: float | None = None,
          radius: int = 1, weights: torch.Tensor | None = None
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter LR samples (B, K, C, h, w) onto the (h*s, w*s) reference grid.

    Kernel: bilinear onto the 4 nearest HR pixels (sigma None) or a Gaussian of `sigma` HR pixels over
    the (2 radius + 2)^2 nearest. `weights` (B, K) or (B, K, 1, h, w) scale each sample. Returns
    (num, den) summed over frames: (B, C, H, W), (B, 1, H, W). Differentiable w.r.t. values (not
    positions). Always computed in float32.
    """
    with torch.autocast(device_type=values.device.type, enabled=False):
        values = values.float()
        b, k, c, h, w = values.shape
        hh, ww = h * scale, w * scale
        ys, xs = hr_positions(h, w, shifts, scale)
        ys = ys.expand(b, k, h, w)
        xs = xs.expand(b, k, h, w)
        if weights is None:
            sample_w = values.new_ones(b, k, h, w)
        elif weights.dim() == 2:
            sample_w = weights.float()[:, :, None, None].expand(b, k, h, w)
        else:
            sample_w = weights.float().reshape(b, k, h, w)
        y0 = torch.floor(ys)
        x0 = torch.floor(xs)
        if sigma is None:
            offsets = [(0, 0), (0, 1), (1, 0), (1, 1)]
        else:
            r = range(-radius, radius + 2)
            offsets = [(oy, ox) for oy in r for ox in r]
        num = values.new_zeros(b, c, hh * ww)
        den = values.new_zeros(b, 1, hh * ww)
        # all frames of a burst scatter into one grid: (B, C, K*h*w)
        vals = values.permute(0, 2, 1, 3, 4).reshape(b, c, k * h * w)
        for oy, ox in offsets:
            ty = y0 + oy
            tx = x0 + ox
            if sigma is None:
                kern = (1 - (ys - ty).abs()).clamp(min=0) * (1 - (xs - tx).abs()).clamp(min=0)
            else:
                kern = torch.exp(-((ys - ty) ** 2 + (xs - tx) ** 2) / (2 * sigma * sigma))
            inside = (ty >= 0) & (ty < hh) & (tx >= 0) & (tx < ww)
            wgt = (kern * sample_w * inside).reshape(b, 1, -1)
            idx = (ty.clamp(0, hh - 1) * ww + tx.clamp(0, ww - 1)).long().reshape(b, 1, -1)
            num.scatter_add_(2, idx.expand(b, c, idx.shape[-1]), vals * wgt)
            den.scatter_add_(2, idx, wgt)
        return num.reshape(b, c, hh, ww), den.reshape(b, 1, hh, ww)


def gaussian_kernel1d(sigma: float, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    g = torch.exp(-(x**2) / (2 * sigma * sigma))
    return g / g.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with zero padding (normalised convolution relies on
    zero padding: blur(num) / blur(den) is then unbiased at the borders)."""
    if sigma <= 0:
        return x
    g = gaussian_kernel1d(sigma, x.device, x.dtype)
    c = x.shape[1]
    r = g.numel() // 2
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), padding=(r, 0), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), padding=(0, r), groups=c)


def normalized_convolution(num: torch.Tensor, den: torch.Tensor, sigma: float, eps: float = 1e-6) -> torch.Tensor:
    return gaussian_blur(num, sigma) / (gaussian_blur(den, sigma) + eps)


def fill_holes(num: torch.Tensor, den: torch.Tensor, sigma_fill: float, alpha: float = 0.05) -> torch.Tensor:
    """num/den where the grid has samples; where it has none, the estimate of a wider normalised
    convolution takes over smoothly (alpha sets how much the wide estimate weighs in everywhere)."""
    num2 = gaussian_blur(num, sigma_fill)
    den2 = gaussian_blur(den, sigma_fill)
    return (num + alpha * num2) / (den + alpha * den2 + 1e-8)


def unsharp_mask(x: torch.Tensor, sigma: float, amount: float) -> torch.Tensor:
    # blur with replicated borders so the sharpening does not darken the edges
    r = max(1, math.ceil(3 * sigma))
    padded = F.pad(x, (r, r, r, r), mode="replicate")
    blurred = gaussian_blur(padded, sigma)[..., r:-r, r:-r]
    return x + amount * (x - blurred)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> (..., H, W): BT.601 luma weights (registration works on grey)."""
    return 0.299 * rgb[..., 0, :, :] + 0.587 * rgb[..., 1, :, :] + 0.114 * rgb[..., 2, :, :]


def align_to_reference(frames: torch.Tensor, shifts: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample each LR frame on the reference's LR grid: aligned_k(p) = frame_k(p + shift_k).
    frames (B, K, C, h, w), shifts (B, K, 2); borders replicate."""
    b, k, c, h, w = frames.shape
    dev = frames.device
    iy = torch.arange(h, device=dev, dtype=torch.float32)
    ix = torch.arange(w, device=dev, dtype=torch.float32)
    sy = iy[None, None, :, None] + shifts[..., 0, None, None].float()
    sx = ix[None, None, None, :] + shifts[..., 1, None, None].float()
    sy, sx = torch.broadcast_tensors(sy, sx)
    grid = torch.stack([(2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1], dim=-1).reshape(b * k, h, w, 2)
    out = F.grid_sample(frames.reshape(b * k, c, h, w).float(), grid, mode=mode, padding_mode="border",
                        align_corners=False)
    return out.reshape(b, k, c, h, w)


def overlap_mask(h: int, w: int, shifts: torch.Tensor, margin: int = 2) -> torch.Tensor:
    """(B, K, h, w) bool: reference pixels that frame k really saw (not its replicated border)."""
    dev = shifts.device
    iy = torch.arange(h, device=dev, dtype=torch.float32)[None, None, :, None]
    ix = torch.arange(w, device=dev, dtype=torch.float32)[None, None, None, :]
    sy = iy + shifts[..., 0, None, None]
    sx = ix + shifts[..., 1, None, None]
    return (sy >= margin) & (sy <= h - 1 - margin) & (sx >= margin) & (sx <= w - 1 - margin)


def normalize_exposure(frames: torch.Tensor, shifts: torch.Tensor, lo: float = 0.25, hi: float = 4.0
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale every frame so its mean over the area it shares with frame 0 matches frame 0's mean there
    (exposure/gain differences). Returns (normalised frames, gains (B, K)); frame 0 keeps gain 1."""
    h, w = frames.shape[-2:]
    aligned = luminance(align_to_reference(frames, shifts))  # (B, K, h, w)
    mask = overlap_mask(h, w, shifts).float()
    ref = luminance(frames[:, :1]).float()
    ref_mean = (ref * mask).sum(dim=(-2, -1)) / mask.sum(dim=(-2, -1)).clamp(min=1)
    frame_mean = (aligned * mask).sum(dim=(-2, -1)) / mask.sum(dim=(-2, -1)).clamp(min=1)
    gains = (ref_mean / frame_mean.clamp(min=1e-4)).clamp(lo, hi)
    gains[:, 0] = 1.0
    return (frames * gains[:, :, None, None, None].to(frames.dtype)).clamp(0.0, 1.0), gains


def _cubic_conv(x: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    ax = x.abs()
    near = ((a + 2) * ax - (a + 3)) * ax * ax + 1
    far = ((a * ax - 5 * a) * ax + 8 * a) * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def shift_downsample_matrices(length: int, scale: int, shifts_lr: torch.Tensor) -> torch.Tensor:
    """Per shift d (N,), the (length / scale, length) matrix of one axis of the synthesiser's forward
    operator: bicubic translation by d * scale HR pixels (grid_sample's kernel, a = -0.75, reflected
    borders), then MATLAB antialiased bicubic downsampling. A translation is separable, so
    warp + downsample of an (H, W) image is A_y @ X @ A_x^T: two small matmuls instead of gathers."""
    from model_store.resize import contributions

    dev = shifts_lr.device
    n = shifts_lr.shape[0]
    pos = torch.arange(length, device=dev, dtype=torch.float64)[None, :] - shifts_lr.double()[:, None] * scale
    base = torch.floor(pos)
    shift_m = torch.zeros(n, length, length, device=dev, dtype=torch.float64)
    for tap in range(-1, 3):
        idx = base + tap
        wgt = _cubic_conv(pos - idx)
        idx = idx.long()
        idx = torch.where(idx < 0, -idx - 1, idx)  # reflect about -0.5 and length - 0.5
        idx = torch.where(idx >= length, 2 * length - 1 - idx, idx).clamp(0, length - 1)
        shift_m.scatter_add_(2, idx[:, :, None], wgt[:, :, None])
    weights, indices = contributions(length, length // scale, 1.0 / scale)
    down = torch.zeros(length // scale, length, dtype=torch.float64)
    down.scatter_add_(1, torch.as_tensor(indices), torch.as_tensor(weights))
    return (down.to(dev)[None] @ shift_m).float()


def back_project(x0: torch.Tensor, frames: torch.Tensor, shifts: torch.Tensor, scale: int, *,
                 weights: torch.Tensor | None = None, iters: int = 20, step: float = 0.5) -> torch.Tensor:
    """Iterative back-projection (Irani & Peleg 1991): refine an HR estimate x0 (B, C, H, W) by
    gradient descent on the weighted mean over frames of 1/2 ||A_k x - y_k||^2, A_k = the
    synthesiser's warp + antialiased downsampling as separable matrices. The gradient is explicit
    (A_y^T r A_x), so no autograd is needed; the small, fixed number of steps is the regulariser
    (measured on training images: more steps or a TV prior did not help). `step` is in units of
    scale^2, the inverse of A^T A's largest eigenvalue (an LR pixel averages ~scale^2 HR pixels)."""
    if iters <= 0:
        return x0
    b, k, _, h, w = frames.shape
    hh, ww = x0.shape[-2:]
    d = shifts.float().reshape(b * k, 2)
    a_y = shift_downsample_matrices(hh, scale, d[:, 0]).reshape(b, k, h, hh)
    a_x = shift_downsample_matrices(ww, scale, d[:, 1]).reshape(b, k, w, ww)
    fw = frames.new_ones(b, k) if weights is None else weights.float()
    fw = fw / fw.sum(dim=1, keepdim=True).clamp(min=1e-8)
    x = x0.float().clone()
    y = frames.float()
    mu = step * scale * scale
    for _ in range(iters):
        pred = torch.einsum("bkcix,bkjx->bkcij", torch.einsum("bkiy,bcyx->bkcix", a_y, x), a_x)
        resid = (pred - y) * fw[:, :, None, None, None]
        grad = torch.einsum("bkcyj,bkjx->bcyx", torch.einsum("bkiy,bkcij->bkcyj", a_y, resid), a_x)
        x = x - mu * grad
    return x
