"""Published PSNR (Y, dB) of each architecture, from its own paper, and the citation that goes into
its model card. Training and the results table read these; no torch here.

Keyed by architecture id, then (dataset, scale). Add a block per architecture; leave out cells the
paper does not report.
"""

from __future__ import annotations

PAPERS: dict[str, str] = {
    "srcnn": "Dong et al., Image Super-Resolution Using Deep Convolutional Networks, TPAMI 2016",
    "fsrcnn": "Dong et al., Accelerating the Super-Resolution Convolutional Neural Network, ECCV 2016",
    "espcn": "Shi et al., Real-Time Single Image and Video Super-Resolution Using an Efficient "
    "Sub-Pixel Convolutional Neural Network, CVPR 2016",
    "vdsr": "Kim et al., Accurate Image Super-Resolution Using Very Deep Convolutional Networks, CVPR 2016",
    "lapsrn": "Lai et al., Deep Laplacian Pyramid Networks for Fast and Accurate Super-Resolution, CVPR 2017",
    "srresnet": "Ledig et al., Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial "
    "Network, CVPR 2017",
    "edsr": "Lim et al., Enhanced Deep Residual Networks for Single Image Super-Resolution, CVPRW 2017 "
    "(EDSR-baseline)",
    "swinir": "Liang et al., SwinIR: Image Restoration Using Swin Transformer, ICCVW 2021 (lightweight SwinIR-S)",
}

PAPER_PSNR: dict[str, dict[tuple[str, int], float]] = {
    "bicubic": {
        ("Set5", 2): 33.66, ("Set5", 3): 30.39, ("Set5", 4): 28.42, ("Set5", 8): 24.40,
        ("Set14", 2): 30.24, ("Set14", 3): 27.55, ("Set14", 4): 26.00,
        ("BSD100", 2): 29.56, ("BSD100", 3): 27.21, ("BSD100", 4): 25.96,
    },
    "srcnn": {
        ("Set5", 2): 36.66, ("Set5", 3): 32.75, ("Set5", 4): 30.48,
        ("Set14", 2): 32.42, ("Set14", 3): 29.28, ("Set14", 4): 27.49,
        ("BSD100", 2): 31.36, ("BSD100", 3): 28.41, ("BSD100", 4): 26.90,
    },
    "fsrcnn": {
        ("Set5", 2): 37.00, ("Set5", 3): 33.16, ("Set5", 4): 30.72,
        ("Set14", 2): 32.63, ("Set14", 3): 29.43, ("Set14", 4): 27.61,
        ("BSD100", 2): 31.53, ("BSD100", 3): 28.53, ("BSD100", 4): 26.98,
    },
    "espcn": {
        ("Set5", 3): 33.00, ("Set5", 4): 30.90,
        ("Set14", 3): 29.42, ("Set14", 4): 27.73,
    },
    "vdsr": {
        ("Set5", 2): 37.53, ("Set5", 3): 33.66, ("Set5", 4): 31.35,
        ("Set14", 2): 33.03, ("Set14", 3): 29.77, ("Set14", 4): 28.01,
        ("BSD100", 2): 31.90, ("BSD100", 3): 28.82, ("BSD100", 4): 27.29,
    },
    "lapsrn": {
        ("Set5", 2): 37.52, ("Set5", 4): 31.54, ("Set5", 8): 26.15,
        ("Set14", 2): 32.99, ("Set14", 4): 28.09,
        ("BSD100", 2): 31.80, ("BSD100", 4): 27.32,
    },
    "srresnet": {("Set5", 4): 32.05, ("Set14", 4): 28.49, ("BSD100", 4): 27.58},
    "srgan": {("Set5", 4): 29.40, ("Set14", 4): 26.02, ("BSD100", 4): 25.16},  # lower than SRResNet by design
    "edsr": {  # EDSR-baseline (16 blocks x 64), the paper's Table 2 / supplementary
        ("Set5", 2): 37.99, ("Set5", 3): 34.37, ("Set5", 4): 32.09,
        ("Set14", 2): 33.57, ("Set14", 3): 30.28, ("Set14", 4): 28.58,
        ("BSD100", 2): 32.16, ("BSD100", 3): 29.09, ("BSD100", 4): 27.57,
    },
    "swinir": {  # SwinIR-S (lightweight)
        ("Set5", 2): 38.14, ("Set5", 3): 34.62, ("Set5", 4): 32.44,
        ("Set14", 2): 33.86, ("Set14", 3): 30.54, ("Set14", 4): 28.77,
        ("BSD100", 2): 32.31, ("BSD100", 3): 29.20, ("BSD100", 4): 27.69,
    },
}


# What each paper trained on: the first thing a shortfall note names (ours: T91 + SunHays80, 171 images)
PAPER_TRAINING_DATA: dict[str, str] = {
    "srcnn": "ImageNet (395,909 images)",
    "fsrcnn": "T91 + General-100 (191 images, scaled and rotated)",
    "espcn": "ImageNet (50,000 images)",
    "vdsr": "291 images (T91 + BSD200, scaled and rotated)",
    "lapsrn": "291 images (T91 + BSD200, scaled and rotated)",
    "srresnet": "ImageNet (350,000 images)",
    "srgan": "ImageNet (350,000 images)",
    "edsr": "DIV2K (800 2K images)",
    "swinir": "DIV2K (800 2K images)",
}


# SSIM only where a comparison hinges on it: SRGAN trades PSNR for texture
PAPER_SSIM: dict[str, dict[tuple[str, int], float]] = {
    "srgan": {("Set5", 4): 0.8472, ("Set14", 4): 0.7397, ("BSD100", 4): 0.6688},
}


def paper_psnr(family: str, dataset: str, scale: int) -> float | None:
    """The published PSNR of a model family (architecture id, or `srgan`) on one benchmark cell."""
    return PAPER_PSNR.get(family, {}).get((dataset, scale))


def paper_ssim(family: str, dataset: str, scale: int) -> float | None:
    return PAPER_SSIM.get(family, {}).get((dataset, scale))
