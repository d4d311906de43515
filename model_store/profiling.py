"""Cost figures for model cards: FLOPs per output pixel, counted on a dummy forward pass."""

from __future__ import annotations

import torch
from torch import nn


def forward_any(module: nn.Module, x: torch.Tensor, scale: int) -> torch.Tensor:
    """The final output of any single-image network, multi-scale ones (VDSR) at `scale`."""
    forward_scale = getattr(module, "forward_with_scale", None)
    return forward_scale(x, scale) if forward_scale is not None else module(x)


def flops_per_output_pixel(module: nn.Module, in_channels: int, scale: int, size: int = 24) -> int:
    """2 x multiply-accumulates of every conv / transposed conv / linear layer, plus window attention's
    two matrix products (q k^T and attn v), per output pixel. Bicubic pre-upsampling, norms and
    activations are not counted: they are a few operations per pixel."""
    macs = 0

    def linear_hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Linear)
        macs += output.numel() // mod.out_features * mod.in_features * mod.out_features

    def attention_hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        # inputs[0]: (windows, tokens, dim); q k^T and attn v each cost tokens^2 * dim MACs per window
        nonlocal macs
        windows, tokens, dim = inputs[0].shape
        macs += 2 * windows * tokens * tokens * dim

    def conv_hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Conv2d | nn.ConvTranspose2d)
        k = mod.kernel_size[0] * mod.kernel_size[1]
        if isinstance(mod, nn.Conv2d):
            macs += output[0].numel() * (mod.in_channels // mod.groups) * k
        else:  # every input pixel scatters a k-tap kernel to each output channel
            macs += inputs[0][0].numel() * (mod.out_channels // mod.groups) * k

    handles = [m.register_forward_hook(conv_hook) for m in module.modules()
               if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    handles += [m.register_forward_hook(linear_hook) for m in module.modules() if isinstance(m, nn.Linear)]
    # window attention modules (SwinIR's WindowAttention) carry a relative position bias table
    handles += [m.register_forward_hook(attention_hook) for m in module.modules()
                if hasattr(m, "relative_position_bias_table")]
    try:
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        with torch.no_grad():
            out = forward_any(module, torch.rand(1, in_channels, size, size, device=device), scale)
    finally:
        for h in handles:
            h.remove()
    return round(2 * macs / (out.shape[-2] * out.shape[-1]))
