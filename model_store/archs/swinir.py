"""SwinIR (Liang et al., "SwinIR: Image Restoration Using Swin Transformer", ICCVW 2021).

Shallow 3x3 conv → residual Swin Transformer blocks (RSTB: `depth` Swin layers alternating plain and
shifted windows, then a 3x3 conv, with a skip) → LayerNorm → 3x3 conv + long skip → upsampler.
Window self-attention carries a learned relative position bias; shifted windows get the usual mask
so tokens only attend within their original region. SwinIR-S (lightweight) is embed_dim 60,
depths/heads [6]*4, window 8, mlp_ratio 2 and the 'pixelshuffledirect' upsampler (one conv + pixel
shuffle); the classical model ('pixelshuffle': conv + LeakyReLU, x2 shuffle stages, conv) is also
built so that users' classical checkpoints load.

The input is reflect-padded to a multiple of the window inside `forward` and the output cropped back,
so any input size works (`size_multiple` 1). Attention is global within each window and windows shift
every other layer, so the receptive field spans the whole image: tiled output is close to, not equal
to, untiled output; `receptive_field` is a generous overlap, not an exact radius.

Parameter names follow the authors' code, so their checkpoints load once the non-learned buffers
(`relative_position_index`, `attn_mask`) are dropped; here those are non-persistent and recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from model_store.archs.blocks import DIV2K_RGB_MEAN
from model_store.registry import register_arch

TILE_OVERLAP_LR = 32  # generous: two windows of context on each side


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) → (B * nW, ws * ws, C), windows in row-major order per image."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def _relative_position_index(ws: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]  # (N, N)


def _shift_mask(h: int, w: int, ws: int, shift: int, device: torch.device) -> torch.Tensor:
    """(nW, N, N) additive mask: -100 between tokens that came from different regions before the roll."""
    img = torch.zeros(1, h, w, 1, device=device)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    win = window_partition(img, ws).squeeze(-1)  # (nW, N)
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    def __init__(self, *, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", _relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, n_windows: int, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B * nW, N, C); mask: (nW, N, N) or None."""
        bw, n, c = x.shape
        b, h = bw // n_windows, self.num_heads
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, h).permute(2, 0, 1)  # (heads, N, N)
        qkv = self.qkv(x).view(b, n_windows, n, 3, h, c // h).permute(3, 0, 1, 4, 2, 5)  # (3, B, nW, h, N, d)
        dtype = qkv.dtype  # bf16 under autocast even when x is fp32 (LayerNorm output)
        if mask is None:
            q, k, v = (t.reshape(bw, h, n, c // h) for t in qkv)
            attn_bias = bias.unsqueeze(0).to(dtype)  # broadcast over B * nW
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        else:
            # fold windows into the head axis so the (nW, heads, N, N) bias broadcasts over the batch
            q, k, v = (t.reshape(b, n_windows * h, n, c // h) for t in qkv)
            attn_bias = (bias.unsqueeze(0) + mask.unsqueeze(1)).reshape(1, n_windows * h, n, n).to(dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        out = out.reshape(b, n_windows, h, n, c // h).permute(0, 1, 3, 2, 4).reshape(bw, n, c)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    def __init__(self, *, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim=dim, window_size=window_size, num_heads=num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, size: tuple[int, int], mask: torch.Tensor | None) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift_size
        y = self.norm1(x).view(b, h, w, c)
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        y = self.attn(window_partition(y, ws), (h // ws) * (w // ws), mask if shift else None)
        y = window_reverse(y, ws, h, w)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    def __init__(self, *, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim=dim,
                num_heads=num_heads,
                window_size=window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int], mask: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, size, mask)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer block: Swin layers, a 3x3 conv on the token map, a skip."""

    def __init__(self, *, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float) -> None:
        super().__init__()
        self.residual_group = BasicLayer(
            dim=dim, depth=depth, num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio
        )
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int], mask: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        y = self.residual_group(x, size, mask)
        y = self.conv(y.transpose(1, 2).reshape(b, c, *size))
        return y.flatten(2).transpose(1, 2) + x


class _PatchEmbedNorm(nn.Module):
    # named `patch_embed.norm` as in the authors' code; the token flattening itself has no parameters
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


class SwinIR(nn.Module):
    def __init__(
        self,
        *,
        scale: int,
        embed_dim: int = 60,
        depths: Sequence[int] = (6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        upsampler: str = "pixelshuffledirect",
        num_feat: int = 64,
        img_range: float = 1.0,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError("depths and num_heads must have the same length")
        self.scale = scale
        self.window_size = window_size
        self.img_range = img_range
        self.upsampler = upsampler
        self.register_buffer("mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(3, embed_dim, 3, 1, 1)
        self.patch_embed = _PatchEmbedNorm(embed_dim)
        self.layers = nn.ModuleList(
            RSTB(dim=embed_dim, depth=d, num_heads=h, window_size=window_size, mlp_ratio=mlp_ratio)
            for d, h in zip(depths, num_heads, strict=True)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        if upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))
        elif upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )
            stages: list[nn.Module] = []
            factors = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
            if scale not in (2, 3, 4, 8):
                raise ValueError(f"scale {scale} is not supported (use 2, 3, 4 or 8)")
            for f in factors:
                stages += [nn.Conv2d(num_feat, f * f * num_feat, 3, 1, 1), nn.PixelShuffle(f)]
            self.upsample = nn.Sequential(*stages)
            self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
        else:
            raise ValueError(f"unsupported upsampler {upsampler!r} (pixelshuffledirect or pixelshuffle)")
        self.receptive_field = TILE_OVERLAP_LR
        self.size_multiple = 1
        self._masks: dict[tuple[int, int, str], torch.Tensor] = {}
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _mask(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (h, w, str(device))
        if key not in self._masks:
            self._masks[key] = _shift_mask(h, w, self.window_size, self.window_size // 2, device)
        return self._masks[key]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        mask = self._mask(h, w, x.device)
        t = self.patch_embed(x)
        for layer in self.layers:
            t = layer(t, (h, w), mask)
        return self.norm(t).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ws = self.window_size
        pad_h, pad_w = (-h) % ws, (-w) % ws
        if pad_h or pad_w:
            # reflect needs pad < size; replicate covers tiny inputs (tiles are never that small)
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        if self.upsampler == "pixelshuffle":
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        else:
            x = self.upsample(x)
        x = x / self.img_range + mean
        return x[:, :, : h * self.scale, : w * self.scale]


@register_arch("swinir", channels="rgb")
def swinir(
    *,
    scale: int,
    embed_dim: int = 60,
    depths: Sequence[int] = (6, 6, 6, 6),
    num_heads: Sequence[int] = (6, 6, 6, 6),
    window_size: int = 8,
    mlp_ratio: float = 2.0,
    upsampler: str = "pixelshuffledirect",
    num_feat: int = 64,
    img_range: float = 1.0,
) -> nn.Module:
    """Defaults are SwinIR-S (lightweight, ~0.9 M parameters)."""
    return SwinIR(
        scale=scale,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        window_size=window_size,
        mlp_ratio=mlp_ratio,
        upsampler=upsampler,
        num_feat=num_feat,
        img_range=img_range,
    )
