"""Quality metrics with the published protocol (see ../shared/data/README.md).

PSNR and SSIM on the Y channel of ITU-R BT.601 YCbCr (MATLAB `rgb2ycbcr`), the output rounded to
8 bit, `shave` pixels cut from every border, SSIM after Wang et al. 2004 (11x11 Gaussian window,
sigma 1.5, K1 = 0.01, K2 = 0.03, population statistics, mean of the map). Pure numpy: the worker
(per job), evaluation, training and tests share these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model_store.resize import imresize

PEAK = 255.0


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """uint8 or float-in-[0,255] RGB (H, W, 3) -> Y in [16, 235] as float64 (MATLAB rgb2ycbcr)."""
    x = rgb.astype(np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def _shave(img: np.ndarray, shave: int) -> np.ndarray:
    return img[shave:-shave, shave:-shave] if shave > 0 else img


def psnr(a: np.ndarray, b: np.ndarray, peak: float = PEAK) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    # separable 'valid' correlation: rows then columns, one shifted slice per tap
    k = g.size
    h, w = img.shape
    rows = sum(g[i] * img[i : h - k + 1 + i, :] for i in range(k))
    return sum(g[j] * rows[:, j : w - k + 1 + j] for j in range(k))


def ssim(a: np.ndarray, b: np.ndarray, peak: float = PEAK) -> float:
    """Mean SSIM of two single-channel images (Wang et al. 2004, 'valid' map as in the MATLAB code)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    g = _gaussian_window()
    mu_a = _filter_valid(a, g)
    mu_b = _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


@dataclass(frozen=True)
class Quality:
    psnr_y: float
    ssim_y: float


def quality_y(output: np.ndarray, reference: np.ndarray, shave: int) -> Quality:
    """PSNR/SSIM (Y, shaved) of an uint8 RGB output against an uint8 RGB reference of the same size."""
    if output.shape != reference.shape:
        raise ValueError(f"output {output.shape} and reference {reference.shape} differ in size")
    y_out = _shave(rgb_to_y(output), shave)
    y_ref = _shave(rgb_to_y(reference), shave)
    return Quality(psnr(y_out, y_ref), ssim(y_out, y_ref))


def lr_consistency_psnr(output: np.ndarray, lr_input: np.ndarray, scale: int) -> float:
    """Downscale the (uint8 RGB) output by `scale` with antialiased bicubic; PSNR (RGB) vs the input.

    A faithful SR output reproduces its input when degraded the same way the input was made.
    """
    h, w = lr_input.shape[:2]
    # float32 is plenty for a PSNR rounded to 8 bit first, and half the time and memory of float64
    back = imresize(output.astype(np.float32), size=(h, w))
    back = np.clip(np.rint(back), 0, 255)
    return psnr(back, lr_input.astype(np.float64))


def high_frequency_energy(rgb: np.ndarray) -> float:
    """Texture energy: the mean squared 4-neighbour Laplacian of the luma (0.299 R + 0.587 G + 0.114 B
    on 0..255) over the valid interior of an (H, W, 3) uint8 or float-in-[0, 255] image. Zero for a
    flat image; bicubic < PSNR-trained SR < HR < over-sharpened GAN output, typically."""
    y = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4.0 * y[1:-1, 1:-1]
    return float(np.mean(lap * lap))


def bicubic_upscale_uint8(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline (MATLAB kernel) on uint8 RGB, rounded: what 'gain over bicubic' means."""
    up = imresize(lr.astype(np.float64), scale=float(scale))
    return np.clip(np.rint(up), 0, 255).astype(np.uint8)
