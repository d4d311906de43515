"""Zoo II architectures: SRResNet (+ SRGAN discriminator), EDSR-baseline, SwinIR-S.

Sizes, any-input-size behaviour, the receptive-field claims tiling relies on, and SwinIR's window
attention against the authors' formulation (explicit softmax with the shift mask added per window).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_store.archs.blocks import DIV2K_RGB_MEAN
from model_store.archs.srresnet import SRGANDiscriminator
from model_store.archs.swinir import SwinIR, WindowAttention, _shift_mask, window_partition
from model_store.registry import count_params, create_model

ARCHS = ("srresnet", "edsr", "swinir")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(20, 24), (13, 17)])
def test_output_size_any_input(arch: str, scale: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = create_model(arch, scale=scale).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        y = model(x)
        y2 = model(x)
    assert y.shape == (1, 3, size[0] * scale, size[1] * scale)
    assert torch.isfinite(y).all()
    assert torch.equal(y, y2)
    assert model.size_multiple == 1


@pytest.mark.parametrize(
    ("arch", "scale", "expected"),
    [
        # counted from the papers' layer lists (EDSR-baseline ~1.5 M, SRResNet ~1.5 M, SwinIR-S ~0.9 M)
        ("edsr", 4, 1_517_571),
        ("edsr", 2, 1_369_859),
        ("swinir", 4, 929_628),
        ("srresnet", 4, 1_548_547),
    ],
)
def test_parameter_counts(arch: str, scale: int, expected: int) -> None:
    assert count_params(create_model(arch, scale=scale)) == expected


def test_swinir_multi_batch_matches_single() -> None:
    # the window/head folding in attention must keep images in a batch independent
    torch.manual_seed(0)
    model = SwinIR(scale=2, depths=[2], num_heads=[3], embed_dim=12).eval()
    x = torch.rand(3, 3, 16, 24)
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shifted", [False, True])
def test_window_attention_matches_reference(shifted: bool) -> None:
    torch.manual_seed(0)
    ws, heads, dim, b, h, w = 4, 2, 8, 2, 8, 12
    attn = WindowAttention(dim=dim, window_size=ws, num_heads=heads)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
    tokens = torch.randn(b, h, w, dim)
    if shifted:
        tokens = torch.roll(tokens, shifts=(-ws // 2, -ws // 2), dims=(1, 2))
    windows = window_partition(tokens, ws)
    n_win = (h // ws) * (w // ws)
    mask = _shift_mask(h, w, ws, ws // 2, tokens.device) if shifted else None
    with torch.no_grad():
        got = attn(windows, n_win, mask)
        # the authors' formulation
        bw, n, c = windows.shape
        qkv = attn.qkv(windows).reshape(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
        logits = q @ k.transpose(-2, -1)
        bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)].view(n, n, heads)
        logits = logits + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            logits = logits.view(bw // n_win, n_win, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            logits = logits.view(-1, heads, n, n)
        ref = (logits.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c)
        ref = attn.proj(ref)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_shift_mask_separates_wrapped_regions() -> None:
    mask = _shift_mask(8, 8, 4, 2, torch.device("cpu"))
    assert mask.shape == (4, 16, 16)
    assert (mask[0] == 0).all()  # the top-left window never wraps
    assert (mask[3] == -100).any()  # the bottom-right window mixes wrapped regions


@pytest.mark.parametrize("arch", ["srresnet", "edsr"])
def test_receptive_field_bounds_context(arch: str) -> None:
    # tiling is exact for CNNs only if nothing beyond `receptive_field` LR px changes an output pixel
    torch.manual_seed(0)
    model = create_model(arch, scale=2, num_block=2).eval()
    rf = model.receptive_field
    size = 2 * rf + 12
    x = torch.rand(1, 3, size, size)
    x2 = x.clone()
    x2[:, :, :, rf + 6 + rf + 1 :] = torch.rand_like(x2[:, :, :, rf + 6 + rf + 1 :])  # far right changed
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    col = 2 * (rf + 6)  # output columns of LR column rf + 6
    torch.testing.assert_close(y[..., : col + 2], y2[..., : col + 2], atol=1e-6, rtol=0)
    assert not torch.allclose(y, y2)


def test_srresnet_mean_shift_starts_from_the_mean_image() -> None:
    # the untrained network predicts ~flat mean grey (|error| ~0.05), not unit-scale noise (~0.7 without the
    # shift), which is what made short SRResNet runs end below bicubic
    torch.manual_seed(0)
    x = torch.rand(1, 3, 24, 24)
    mean = torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1)
    errors = {}
    for shift in (True, False):
        torch.manual_seed(1)
        model = create_model("srresnet", scale=2, num_block=2, mean_shift=shift).eval()
        with torch.no_grad():
            errors[shift] = float((model(x) - mean).abs().mean())
    assert errors[True] < 0.1 < 0.5 < errors[False]


def test_srgan_discriminator_any_patch_size() -> None:
    disc = SRGANDiscriminator().eval()
    for side in (64, 96):
        logits, feats = disc.forward_features(torch.rand(2, 3, side, side))
        assert logits.shape == (2,)
        assert [f.shape[1] for f in feats] == [64, 128, 256, 512]
        assert feats[-1].shape[-1] == side // 16
    assert isinstance(disc, nn.Module)
