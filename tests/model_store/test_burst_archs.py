"""Every registered burst architecture: shape, finiteness, gradients; shift-and-pool permutation
invariance; the parameter budget."""

from __future__ import annotations

import pytest
import torch

from model_store.registry import arch_spec, count_params, create_model, list_archs

BURST_ARCHS = [a for a in list_archs() if arch_spec(a).kind == "burst"]


def _burst(b: int = 2, k: int = 5, h: int = 12, w: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(b, k, 3, h, w, generator=g)
    shifts = (torch.rand(b, k, 2, generator=g) * 2 - 1) * 1.5
    shifts[:, 0] = 0
    return frames, shifts


def _randomise(module: torch.nn.Module) -> None:
    # zero-initialised output layers would make any invariance test trivially true
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_the_three_burst_methods_are_registered() -> None:
    assert {"burst_shift_add", "misr_gru", "shift_pool"} <= set(BURST_ARCHS)
    assert not arch_spec("burst_shift_add").trainable
    assert arch_spec("shift_pool").trainable and arch_spec("misr_gru").trainable


@pytest.mark.parametrize("arch", BURST_ARCHS)
@pytest.mark.parametrize("scale", [2, 4])
def test_forward_shape_and_finite(arch: str, scale: int) -> None:
    model = create_model(arch, scale=scale)
    _randomise(model)
    frames, shifts = _burst()
    with torch.no_grad():
        out = model(frames, shifts, None)
    assert out.shape == (2, 3, 12 * scale, 10 * scale)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", [a for a in BURST_ARCHS if arch_spec(a).trainable])
def test_trainable_archs_are_small_and_backpropagate(arch: str) -> None:
    model = create_model(arch, scale=4)
    assert 0 < count_params(model) < 2_000_000
    frames, shifts = _burst(b=1, k=3)
    model(frames, shifts, None).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)


@pytest.mark.parametrize("k", [1, 3, 9])
def test_any_number_of_frames(k: int) -> None:
    for arch in ("shift_pool", "misr_gru"):
        model = create_model(arch, scale=4)
        frames, shifts = _burst(b=1, k=k)
        with torch.no_grad():
            assert model(frames, shifts, None).shape == (1, 3, 48, 40)


def test_shift_pool_is_invariant_to_frame_order() -> None:
    model = create_model("shift_pool", scale=4).eval()
    _randomise(model)
    frames, shifts = _burst(b=1, k=6, seed=3)
    perm = torch.tensor([4, 2, 0, 5, 1, 3])  # the reference (shift 0) moves too: nothing is special
    with torch.no_grad():
        a = model(frames, shifts, None)
        b = model(frames[:, perm], shifts[:, perm], None)
        # and the network really depends on the shifts (not trivially invariant)
        c = model(frames, shifts.flip(1), None)
    assert float(a.abs().mean()) > 0.01
    assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())
    assert not torch.allclose(a, c, atol=1e-3)


@pytest.mark.parametrize("arch", ["burst_shift_add", "shift_pool"])
def test_weights_zero_removes_a_frame(arch: str) -> None:
    # the descriptor passes registration's frame weights: a rejected frame must not reach the output
    model = create_model(arch, scale=2).eval()
    if arch == "shift_pool":
        _randomise(model)
    frames, shifts = _burst(b=1, k=4)
    spoiled = frames.clone()
    spoiled[:, 3] = 1.0 - spoiled[:, 3]
    w = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    with torch.no_grad():
        a = model(frames[:, :3], shifts[:, :3], w[:, :3])
        b = model(spoiled, shifts, w)
    assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())
