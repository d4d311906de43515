"""Burst synthesiser: one HR image -> K noisy, sub-pixel-shifted LR frames with known shifts.

Each frame k: warp HR by a random sub-pixel translation t_k (HR pixels; optional small rotation about
the centre) with bicubic interpolation, downsample with the MATLAB antialiased bicubic kernel
(model_store.resize, the eval sets' degradation), apply an exposure gain, add Gaussian read noise plus
signal-dependent (Poisson-like) shot noise, clip and round to 8 bit. Frame 0 is the unwarped
reference, so the HR image is the ground truth on the reference grid.

Outlier frames (optional, never frame 0): unrelated content (another image of the batch, or the HR
flipped when the batch has one image) or a gross misalignment (large shift plus a 8-20 degree
rotation), which a translation-only registration cannot explain.

Everything runs in torch on any device (training synthesises batches on the GPU); `synth_burst_np`
wraps it for numpy callers. Random draws come from a seeded CPU generator (parameters) and a seeded
generator on the device (noise), so a seed gives the same burst on a given device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model_store.fast_resize import imresize_torch_cached as imresize_torch  # same numbers, cached tables


@dataclass(frozen=True)
class BurstConfig:
    frames: int = 8
    scale: int = 4
    max_shift: float = 2.0  # LR pixels, uniform in [-max_shift, max_shift] per axis
    max_rotation_deg: float = 0.0  # small rotations about the centre (0 = translations only)
    noise_sigma: float = 2.0 / 255.0  # Gaussian read noise (std, [0, 1] units)
    shot_noise: float = 0.0  # Poisson-like: variance += shot_noise * signal
    gain_range: float = 0.0  # exposure gain uniform in [1 - g, 1 + g] (frame 0 keeps 1)
    outlier_prob: float = 0.0  # per burst: probability that one frame (not 0) is an outlier
    outlier_below: int | None = None  # the outlier's index is < this (evaluation: inside the first K frames)
    quantize: bool = True  # round to 8 bit like a camera's output
    # translate + downsample unrotated frames with the separable matrices of the same operator
    # (model_store.burst.fusion.shift_downsample_matrices): 3-5x cheaper than warp + resize on CPU,
    # equal before 8-bit rounding to ~1e-6. Training uses it; the eval bursts keep the reference path.
    matrix_warp: bool = False


@dataclass
class Burst:
    frames: torch.Tensor  # (B, K, 3, h, w) in [0, 1]
    shifts: torch.Tensor  # (B, K, 2) true (dy, dx) in LR pixels relative to frame 0
    gains: torch.Tensor  # (B, K)
    outlier: torch.Tensor  # (B, K) bool
    hr: torch.Tensor  # (B, 3, h*s, w*s): ground truth on frame 0's grid


def warp(img: torch.Tensor, shift_hr: torch.Tensor, angle_rad: torch.Tensor | None = None,
         mode: str = "bicubic") -> torch.Tensor:
    """Move the content of (N, C, H, W) images by shift_hr (N, 2) = (dy, dx) pixels (and rotate it by
    angle_rad about the centre): out(p) = img(R^-1 (p - c - t) + c). Reflection at the borders."""
    h, w = img.shape[-2:]
    dev, dt = img.device, torch.float32
    ys = torch.arange(h, device=dev, dtype=dt)
    xs = torch.arange(w, device=dev, dtype=dt)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) output pixel centres
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    py = gy[None] - cy - shift_hr[:, 0, None, None].to(dt)
    px = gx[None] - cx - shift_hr[:, 1, None, None].to(dt)
    if angle_rad is not None:
        cos = torch.cos(angle_rad).to(dev, dt)[:, None, None]
        sin = torch.sin(angle_rad).to(dev, dt)[:, None, None]
        py, px = cos * py - sin * px, sin * py + cos * px  # R^-1 with R rotating by -angle
    sy, sx = py + cy, px + cx
    grid = torch.stack([(2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1], dim=-1)  # align_corners=False
    out = F.grid_sample(img.to(dt), grid, mode=mode, padding_mode="reflection", align_corners=False)
    return out.to(img.dtype)


def degrade_shifted(hr: torch.Tensor, shift_lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The synthesiser's forward operator without noise: warp by shift_lr (N, 2) LR pixels, then
    antialiased bicubic downsampling. Self-supervised training applies it to the prediction."""
    moved = warp(hr, shift_lr * scale)
    return imresize_torch(moved, scale=1.0 / scale)


def synth_burst(hr: torch.Tensor, cfg: BurstConfig, seed: int | None = None,
                generator: torch.Generator | None = None) -> Burst:
    """Synthesise a burst from HR images (B, 3, H, W) in [0, 1]; H, W multiples of cfg.scale.

    Pass either `seed` (fully deterministic) or a CPU `generator` (training: one stream per run).
    """
    if hr.dim() != 4 or hr.shape[1] != 3:
        raise ValueError(f"hr must be (B, 3, H, W), got {tuple(hr.shape)}")
    b, _, hh, ww = hr.shape
    s, k = cfg.scale, cfg.frames
    if hh % s or ww % s:
        raise ValueError(f"HR size {hh}x{ww} is not a multiple of scale {s}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0 if seed is None else seed)
    dev = hr.device

    shifts = (torch.rand(b, k, 2, generator=gen, dtype=torch.float64) * 2 - 1) * cfg.max_shift
    shifts[:, 0] = 0.0
    angles = (torch.rand(b, k, generator=gen, dtype=torch.float64) * 2 - 1) * math.radians(cfg.max_rotation_deg)
    angles[:, 0] = 0.0
    gains = 1.0 + (torch.rand(b, k, generator=gen, dtype=torch.float64) * 2 - 1) * cfg.gain_range
    gains[:, 0] = 1.0
    outlier = torch.zeros(b, k, dtype=torch.bool)
    has_outlier = torch.rand(b, generator=gen) < cfg.outlier_prob
    hi = k if cfg.outlier_below is None else min(k, cfg.outlier_below)
    outlier_idx = torch.randint(1, max(hi, 2), (b,), generator=gen)
    outlier_type = torch.randint(0, 2, (b,), generator=gen)  # 0: unrelated content, 1: misaligned
    big_shift = (torch.rand(b, 2, generator=gen, dtype=torch.float64) * 2 - 1) * 0.25 * min(hh, ww) / s
    big_angle = (torch.rand(b, generator=gen, dtype=torch.float64) * 12 + 8) * math.radians(1.0)
    big_angle = big_angle * torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0).double()
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=gen))

    src = hr.unsqueeze(1).expand(b, k, 3, hh, ww).clone()
    if k > 1:
        for i in torch.nonzero(has_outlier).flatten().tolist():
            j = int(outlier_idx[i])
            outlier[i, j] = True
            if int(outlier_type[i]) == 0:
                src[i, j] = hr[(i + 1) % b] if b > 1 else hr[i].flip(-1).flip(-2)
            else:
                shifts[i, j] = big_shift[i]
                angles[i, j] = big_angle[i]

    flat = src.reshape(b * k, 3, hh, ww).float()
    if cfg.matrix_warp:
        lr = _translate_downsample(flat, shifts.reshape(b * k, 2).to(dev), s)
        rotated = torch.nonzero(angles.reshape(b * k) != 0).flatten().tolist()
        if rotated:  # the few rotated (outlier) frames take the general path
            moved = warp(flat[rotated], (shifts * s).reshape(b * k, 2)[rotated].to(dev),
                         angles.reshape(b * k)[rotated].to(dev))
            lr[rotated] = imresize_torch(moved, scale=1.0 / s)
        lr = lr.reshape(b, k, 3, hh // s, ww // s)
    else:
        moved = warp(flat, (shifts * s).reshape(b * k, 2).to(dev), angles.reshape(b * k).to(dev))
        moved[:: k] = flat[:: k]  # the reference frame is exactly the HR image (no interpolation blur)
        lr = imresize_torch(moved, scale=1.0 / s).reshape(b, k, 3, hh // s, ww // s)
    lr = lr * gains.to(dev, lr.dtype)[:, :, None, None, None]
    lr = add_sensor_noise(lr, cfg.noise_sigma, cfg.shot_noise, noise_seed)
    if cfg.quantize:
        lr = torch.round(lr * 255.0) / 255.0
    return Burst(frames=lr, shifts=shifts.float(), gains=gains.float(), outlier=outlier, hr=hr.float())


def _translate_downsample(flat: torch.Tensor, shifts_lr: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C, H, W) HR, (N, 2) LR-pixel shifts -> (N, C, H/s, W/s): A_y X A_x^T per frame."""
    from model_store.burst.fusion import shift_downsample_matrices

    a_y = shift_downsample_matrices(flat.shape[-2], scale, shifts_lr[:, 0].double())
    a_x = shift_downsample_matrices(flat.shape[-1], scale, shifts_lr[:, 1].double())
    return a_y[:, None] @ flat @ a_x[:, None].transpose(-1, -2)


def add_sensor_noise(x: torch.Tensor, sigma: float, shot: float, seed: int) -> torch.Tensor:
    """Gaussian read noise + signal-dependent shot noise (Gaussian approximation of Poisson), clipped."""
    if sigma <= 0 and shot <= 0:
        return x.clamp(0.0, 1.0)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    var = sigma**2 + shot * x.clamp(min=0.0)
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return (x + noise * var.sqrt()).clamp(0.0, 1.0)


def synth_burst_np(hr: np.ndarray, cfg: BurstConfig, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """numpy front end: HR (H, W, 3) float in [0, 1] or uint8 -> (K frames (h, w, 3) float32, shifts
    (K, 2) as (dy, dx) LR pixels relative to frame 0). The HR is modcropped to the scale."""
    arr = hr.astype(np.float32) / 255.0 if hr.dtype == np.uint8 else hr.astype(np.float32)
    h, w = arr.shape[:2]
    arr = arr[: h - h % cfg.scale, : w - w % cfg.scale]
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]
    burst = synth_burst(t, cfg, seed=seed)
    frames = [f.permute(1, 2, 0).numpy() for f in burst.frames[0]]
    return frames, burst.shifts[0].numpy()
