"""Sub-pixel registration of burst frames against the reference, and outlier rejection.

Translation by cross-correlation in the Fourier domain (mean removed, Hann-windowed grey frames),
integer peak, then Guizar-Sicairos et al. 2008 refinement: the cross-power spectrum is evaluated by a
matrix DFT on a 1.5 px neighbourhood of the peak upsampled `upsample` times, which costs
O(upsample * N) instead of an FFT `upsample` times larger. A parabolic fit on the refined peak adds
the last fraction. Batched torch on any device.

Confidence is the normalised cross-correlation between the reference and the frame resampled onto
the reference grid with the estimated shift, over the area both saw: it is low for unrelated content
and for motion a translation cannot explain (rotation, a moving subject). A frame is rejected when its
dissimilarity (1 - NCC) is far above the burst's typical value, or when its shift leaves too little
overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from model_store.burst.fusion import align_to_reference, luminance, overlap_mask

DEFAULT_UPSAMPLE = 50  # refinement grid: 1/50 LR pixel before the parabolic fit
WHITENING = 0.0  # 0: plain cross-correlation; measured more accurate than phase correlation (1.0) on noisy bursts


@dataclass
class Registration:
    shifts: torch.Tensor  # (B, K, 2) (dy, dx) LR pixels, frame_k(p) = reference(p - shift)
    confidence: torch.Tensor  # (B, K) NCC after alignment, in [-1, 1]; reference = 1
    rejected: torch.Tensor  # (B, K) bool
    reasons: list[list[str | None]]  # per burst, per frame: why it was rejected


def _hann2d(h: int, w: int, device: torch.device) -> torch.Tensor:
    wy = torch.hann_window(h, periodic=False, device=device, dtype=torch.float64)
    wx = torch.hann_window(w, periodic=False, device=device, dtype=torch.float64)
    return wy[:, None] * wx[None, :]


def _upsampled_dft(data: torch.Tensor, region: int, upsample: int, offsets: torch.Tensor) -> torch.Tensor:
    """Inverse DFT of data (N, H, W) evaluated on a region x region grid with spacing 1/upsample,
    starting at -offsets (N, 2) (upsampled pixels). As skimage's _upsampled_dft, batched."""
    h, w = data.shape[-2:]
    dev = data.device
    freq_y = torch.fft.fftfreq(h, d=upsample, device=dev, dtype=torch.float64)  # (H,)
    freq_x = torch.fft.fftfreq(w, d=upsample, device=dev, dtype=torch.float64)
    pos = torch.arange(region, device=dev, dtype=torch.float64)
    ky = (pos[None, :] - offsets[:, 0:1])[:, :, None] * freq_y[None, None, :]  # (N, R, H)
    kx = (pos[None, :] - offsets[:, 1:2])[:, :, None] * freq_x[None, None, :]  # (N, R, W)
    ker_y = torch.exp(2j * math.pi * ky)
    ker_x = torch.exp(2j * math.pi * kx)
    return torch.einsum("nrh,nhw,ncw->nrc", ker_y, data, ker_x)


def _parabolic(cm: torch.Tensor, c0: torch.Tensor, cp: torch.Tensor) -> torch.Tensor:
    den = cm - 2 * c0 + cp
    off = 0.5 * (cm - cp) / torch.where(den.abs() < 1e-12, torch.full_like(den, -1e-12), den)
    return off.clamp(-0.5, 0.5)


def estimate_shifts(ref: torch.Tensor, mov: torch.Tensor, upsample: int = DEFAULT_UPSAMPLE) -> torch.Tensor:
    """Shift (N, 2) of grey images mov (N, h, w) relative to ref (N, h, w) or (1, h, w), in pixels:
    mov(p) ~ ref(p - shift)."""
    n, h, w = mov.shape
    dev = mov.device
    win = _hann2d(h, w, dev)
    r = ref.double()
    m = mov.double()
    r = (r - r.mean(dim=(-2, -1), keepdim=True)) * win
    m = (m - m.mean(dim=(-2, -1), keepdim=True)) * win
    prod = torch.fft.fft2(m) * torch.conj(torch.fft.fft2(r))
    prod = prod / prod.abs().clamp(min=1e-12) ** WHITENING
    cc = torch.fft.ifft2(prod).abs()
    flat = cc.reshape(n, -1).argmax(dim=1)
    peak = torch.stack([flat // w, flat % w], dim=1).double()
    size = torch.tensor([h, w], device=dev, dtype=torch.float64)
    peak = torch.where(peak > size // 2, peak - size, peak)
    if upsample <= 1:
        return peak
    region = math.ceil(upsample * 1.5)
    centre = region // 2
    offsets = centre - peak * upsample
    up = _upsampled_dft(prod, region, upsample, offsets).abs()  # (N, R, R)
    idx = up.reshape(n, -1).argmax(dim=1)
    iy, ix = idx // region, idx % region
    # parabolic refinement on the upsampled grid (clamped neighbours at the region's edge)
    ar = torch.arange(n, device=dev)
    ym, yp = (iy - 1).clamp(0, region - 1), (iy + 1).clamp(0, region - 1)
    xm, xp = (ix - 1).clamp(0, region - 1), (ix + 1).clamp(0, region - 1)
    c0 = up[ar, iy, ix]
    fy = _parabolic(up[ar, ym, ix], c0, up[ar, yp, ix])
    fx = _parabolic(up[ar, iy, xm], c0, up[ar, iy, xp])
    fine = torch.stack([iy.double() + fy - centre, ix.double() + fx - centre], dim=1)
    return peak + fine / upsample


def ncc_after_alignment(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """(B, K) normalised cross-correlation of each frame, moved onto the reference grid, with frame 0
    over the pixels both saw."""
    h, w = frames.shape[-2:]
    grey = luminance(align_to_reference(frames, shifts)).double()  # (B, K, h, w)
    ref = luminance(frames[:, :1].float()).double()
    mask = overlap_mask(h, w, shifts).double()
    cnt = mask.sum(dim=(-2, -1)).clamp(min=1)

    def centred(x: torch.Tensor) -> torch.Tensor:
        return (x - (x * mask).sum(dim=(-2, -1), keepdim=True) / cnt[..., None, None]) * mask

    a, r = centred(grey), centred(ref.expand_as(grey))
    num = (a * r).sum(dim=(-2, -1))
    den = torch.sqrt((a * a).sum(dim=(-2, -1)) * (r * r).sum(dim=(-2, -1))).clamp(min=1e-12)
    ncc = (num / den).float()
    ncc[:, 0] = 1.0
    return ncc


def register_burst(frames: torch.Tensor, *, upsample: int = DEFAULT_UPSAMPLE, reject: bool = True,
                   outlier_factor: float = 3.0, outlier_margin: float = 0.1,
                   max_shift_fraction: float = 0.25) -> Registration:
    """Register every frame of (B, K, 3, h, w) against frame 0 and flag outliers."""
    b, k, _, h, w = frames.shape
    grey = luminance(frames.float())  # (B, K, h, w)
    ref = grey[:, :1].expand(b, k, h, w).reshape(b * k, h, w)
    shifts = estimate_shifts(ref, grey.reshape(b * k, h, w), upsample).float().reshape(b, k, 2)
    shifts[:, 0] = 0.0
    conf = ncc_after_alignment(frames, shifts)
    rejected = torch.zeros(b, k, dtype=torch.bool, device=frames.device)
    reasons: list[list[str | None]] = [[None] * k for _ in range(b)]
    if reject and k > 1:
        dis = (1.0 - conf[:, 1:]).clamp(min=0)
        typical = dis.median(dim=1, keepdim=True).values
        limit = torch.maximum(outlier_factor * typical, typical + outlier_margin)
        too_far = (shifts[:, 1:].abs() > max_shift_fraction * torch.tensor([h, w], device=frames.device)).any(-1)
        bad = dis > limit
        rejected[:, 1:] = bad | too_far
        for i, j0 in torch.nonzero(rejected[:, 1:]).tolist():
            j = j0 + 1
            if too_far[i, j0]:
                reasons[i][j] = "shift too large: too little overlap with the reference"
            else:
                reasons[i][j] = (f"does not match the reference after alignment (correlation "
                                 f"{float(conf[i, j]):.2f}, burst median {1 - float(typical[i, 0]):.2f})")
    return Registration(shifts=shifts, confidence=conf, rejected=rejected, reasons=reasons)


def register_burst_np(frames: list[np.ndarray], **kwargs: object) -> Registration:
    """numpy front end: K frames (h, w, 3) float in [0, 1]; frame 0 is the reference."""
    t = torch.from_numpy(np.stack(frames).astype(np.float32)).permute(0, 3, 1, 2)[None]
    return register_burst(t, **kwargs)  # type: ignore[arg-type]
