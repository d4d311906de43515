"""Registry-driven checks: every registered single-image architecture, at every scale it accepts,
goes through the worker's descriptor path on CPU with the right output size, no NaN, deterministically."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from model_store.card import ModelCard
from model_store.profiling import flops_per_output_pixel
from model_store.registry import SRDescriptor, arch_spec, create_model, list_archs

DEFAULT_SCALES = (2, 3, 4)
MY_ARCHS = ("srcnn", "fsrcnn", "espcn", "vdsr", "lapsrn")


def _cases() -> list[tuple[str, int]]:
    cases = []
    for arch in list_archs():
        spec = arch_spec(arch)
        if spec.kind != "single":
            continue
        probe = create_model(arch, scale=2)
        cases += [(arch, s) for s in getattr(probe, "supported_scales", DEFAULT_SCALES)]
    return cases


def _descriptor(arch: str, scale: int, module: nn.Module) -> SRDescriptor:
    spec = arch_spec(arch)
    card = ModelCard(name=f"test_{arch}", family=arch, architecture=arch, scales=[scale],
                     channels=spec.channels, params=0, flops_per_output_pixel=0)  # type: ignore[arg-type]
    return SRDescriptor(card=card, scale=scale, module=module.eval(), device=torch.device("cpu"),
                        channels=spec.channels, supports_half=False, receptive_field=8,
                        size_multiple=int(getattr(module, "size_multiple", 1)))


@pytest.mark.parametrize(("arch", "scale"), _cases())
def test_descriptor_output_shape_finite_deterministic(arch: str, scale: int) -> None:
    torch.manual_seed(0)
    module = create_model(arch, scale=scale)
    desc = _descriptor(arch, scale, module)
    m = desc.size_multiple
    h, w = m * math.ceil(13 / m), m * math.ceil(10 / m)  # non-square, odd where allowed
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    out1 = desc(x)
    out2 = desc(x)
    assert out1.shape == (1, 3, h * scale, w * scale)
    assert torch.isfinite(out1).all()
    assert torch.equal(out1, out2)


@pytest.mark.parametrize("arch", MY_ARCHS)
def test_receptive_field_bounds_the_context(arch: str) -> None:
    """Changing LR pixels farther than `receptive_field` from a spot leaves the output there unchanged."""
    scale = 4
    torch.manual_seed(0)
    module = create_model(arch, scale=scale).eval()
    rf = module.receptive_field
    size, c = 2 * rf + 24, rf + 12  # LR pixel c, far from the borders
    x = torch.rand(1, 1, size, size)
    y = x.clone()
    far = torch.ones_like(x, dtype=torch.bool)
    far[..., c - rf : c + rf + 1, c - rf : c + rf + 1] = False
    y[far] = torch.rand(int(far.sum()))
    with torch.no_grad():
        a, b = module(x), module(y)
    spot = (..., slice(c * scale, (c + 1) * scale), slice(c * scale, (c + 1) * scale))
    assert torch.allclose(a[spot], b[spot], atol=1e-6)
    assert not torch.allclose(a, b)  # the perturbation did reach the rest of the output


def test_flops_match_hand_count() -> None:
    # FSRCNN x2 (d=56, s=12, m=4): MACs per LR pixel, then the deconv's per input pixel; per HR pixel / 4
    lr_macs = 25 * 56 + 56 * 12 + 4 * 9 * 12 * 12 + 12 * 56 + 81 * 56
    assert flops_per_output_pixel(create_model("fsrcnn", scale=2), 1, 2) == round(2 * lr_macs / 4)
    srcnn_macs = 81 * 64 + 25 * 64 * 32 + 25 * 32
    assert flops_per_output_pixel(create_model("srcnn", scale=3), 1, 3) == 2 * srcnn_macs


def test_vdsr_one_network_all_scales() -> None:
    module = create_model("vdsr", scale=2).eval()
    x = torch.rand(1, 1, 9, 7)
    with torch.no_grad():
        for s in (2, 3, 4):
            assert module.forward_with_scale(x, s).shape == (1, 1, 9 * s, 7 * s)


def test_lapsrn_pyramid_levels() -> None:
    module = create_model("lapsrn", scale=8).eval()
    with torch.no_grad():
        levels = module.forward_pyramid(torch.rand(1, 1, 6, 5))
    assert [t.shape[-2:] for t in levels] == [(12, 10), (24, 20), (48, 40)]
    with pytest.raises(ValueError):
        create_model("lapsrn", scale=3)
