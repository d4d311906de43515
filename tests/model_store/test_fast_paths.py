"""The CPU fast paths compute the same operators: polyphase bicubic (numpy and torch) == MATLAB's gather, and
the sub-pixel rewrite of a transposed convolution == the transposed convolution; the CPU tanh == tanh."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from model_store import fast_resize
from model_store.card import Catalog
from model_store.cpu_inference import (
    PrescaledHalfTanh,
    PrescaledSigmoidTanh,
    SigmoidTanh,
    prepare_for_cpu,
    route_pointwise_convs_to_onednn,
)
from model_store.fast_resize import imresize_torch_cached
from model_store.registry import arch_spec, load_descriptor, rgb_to_ycbcr, ycbcr_planes_to_rgb
from model_store.resize import _out_size, _resize_axis_gather, imresize, polyphase_plan
from model_store.subpixel import SubPixelDeconv, convert_deconvs, pixel_shuffle


def _gather_reference(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's algorithm as written: gather each output's taps, weight, sum (both axes)."""
    h, w = img.shape[:2]
    oh, ow, _, _ = _out_size(h, w, scale, None)
    out = _resize_axis_gather(img, 0, h, oh, scale)
    return _resize_axis_gather(out, 1, w, ow, scale)


@pytest.mark.parametrize("scale", [2.0, 3.0, 4.0, 8.0, 0.5, 1 / 3, 0.25, 0.125, 1.5])
@pytest.mark.parametrize("size", [(1, 1), (3, 2), (9, 7), (40, 33), (150, 97)])
def test_fast_resizes_match_the_gather_reference(scale: float, size: tuple[int, int]) -> None:
    h, w = size
    if scale < 1:  # integer downscales: sizes that divide
        h, w = h * round(1 / scale), w * round(1 / scale)
    img = np.random.default_rng(h * 131 + w).random((h, w, 3))
    ref = _gather_reference(img, scale)
    fast_np = imresize(img, scale=scale)  # polyphase where the factor allows
    fast_torch = imresize_torch_cached(torch.from_numpy(img).permute(2, 0, 1).float(), scale=scale)
    assert fast_np.shape == ref.shape and fast_torch.shape[-2:] == ref.shape[:2]
    assert np.abs(fast_np - ref).max() < 1e-12
    assert np.abs(fast_torch.permute(1, 2, 0).numpy() - ref).max() < 1e-5


@pytest.mark.parametrize("scale", [4.0, 3.0, 0.25])
def test_cpu_gemm_and_device_conv_paths_agree(scale: float) -> None:
    # CPU tensors take the GEMM path; other devices the strided convolution: both against each other
    # (on CPU) and differentiable (the GAN trainer's LR-consistency loss backpropagates through it)
    x = torch.rand(2, 3, 70, 45, dtype=torch.float64)
    if scale < 1:
        x = torch.rand(2, 3, 280, 180, dtype=torch.float64)
    h, w = x.shape[-2:]
    oh, ow, sh, sw = _out_size(h, w, scale, None)
    via_conv = x
    via_gemm = x
    for dim, length, out_len, s in ((-2, h, oh, sh), (-1, w, ow, sw)):
        planned = fast_resize._polyphase(length, out_len, s, x.device, x.dtype)
        assert planned is not None
        gemm = fast_resize._banded(length, out_len, s, x.device, x.dtype)
        assert gemm is not None
        via_gemm = fast_resize._resize_axis_gemm(via_gemm, planned[0], gemm, out_len, dim)
        if dim == -2:
            via_conv = fast_resize._resize_last_axis(via_conv.transpose(-1, -2), planned, out_len).transpose(-1, -2)
        else:
            via_conv = fast_resize._resize_last_axis(via_conv, planned, out_len)
    assert via_gemm.shape == via_conv.shape == (2, 3, oh, ow)
    assert (via_gemm - via_conv).abs().max() < 1e-12
    side = 6 if scale > 1 else 24
    assert polyphase_plan(side, round(side * scale), scale) is not None  # the GEMM path, not the gather
    small = torch.rand(1, 1, side, side - 1 if scale > 1 else side, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize_torch_cached(t, scale=scale), (small,))


def test_integer_factors_take_the_polyphase_path() -> None:
    # the fast path must really be used where it applies (and refuse what it cannot do exactly)
    assert polyphase_plan(50, 200, 4.0) is not None
    assert polyphase_plan(200, 50, 0.25) is not None
    assert polyphase_plan(51, 77, 1.5) is None  # not an integer factor
    assert polyphase_plan(1, 4, 4.0) is None  # mirroring would wrap: gather path


@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "stride", "padding", "output_padding"),
    [(56, 1, 9, 4, 4, 3), (56, 1, 9, 3, 4, 2), (56, 1, 9, 2, 4, 1),  # FSRCNN x4 / x3 / x2
     (64, 64, 4, 2, 1, 0), (1, 1, 4, 2, 1, 0),  # LapSRN features / image
     (4, 2, 5, 3, 0, 0), (3, 3, 2, 2, 0, 0)],  # pad-free and asymmetric-pad cases
)
def test_subpixel_rewrite_equals_transposed_conv(c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                                                 output_padding: int) -> None:
    torch.manual_seed(kernel * 10 + stride)
    deconv = nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=padding, output_padding=output_padding)
    fast = SubPixelDeconv(deconv)
    with torch.no_grad():
        for hw in [(1, 1), (7, 5), (24, 31)]:
            x = torch.randn(2, c_in, *hw)
            a, b = deconv(x), fast(x)
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())


@pytest.mark.parametrize(("channels", "stride", "output_padding"), [(1, 4, 3), (1, 3, 2), (1, 2, 1), (3, 2, 0)])
def test_subpixel_deconv_adds_the_bicubic_skip_before_its_shuffle(channels: int, stride: int,
                                                                   output_padding: int) -> None:
    """FSRCNN's skip on the LR grid == the transposed conv plus the full-size MATLAB resize (tiny inputs take
    that path); a geometry whose output is not exactly s times the input is refused."""
    torch.manual_seed(stride)
    deconv = nn.ConvTranspose2d(8, channels, 9, stride=stride, padding=4, output_padding=output_padding)
    fast = SubPixelDeconv(deconv)
    with torch.no_grad():
        for hw in [(1, 1), (2, 3), (7, 5), (24, 31)]:
            x, lr = torch.randn(2, 8, *hw), torch.rand(2, channels, *hw)
            expected = deconv(x)
            if expected.shape[-2:] != (hw[0] * stride, hw[1] * stride):
                with pytest.raises(ValueError, match="exactly"):
                    fast(x, bicubic_of=lr)
                continue
            expected = expected + imresize_torch_cached(lr, scale=float(stride))
            assert float((fast(x, bicubic_of=lr) - expected).abs().max()) < 1e-4


def test_bicubic_phases_shuffle_to_the_matlab_resize() -> None:
    lr = torch.rand(2, 3, 9, 14, dtype=torch.float64)
    for scale in (2, 3, 4):
        phases = fast_resize.bicubic_phases(lr, scale)
        assert phases is not None and phases.shape == (2, 3 * scale * scale, 9, 14)
        assert torch.allclose(F.pixel_shuffle(phases, scale), imresize_torch_cached(lr, scale=float(scale)),
                              atol=1e-12)
    assert fast_resize.bicubic_phases(torch.rand(1, 1, 1, 5), 4) is None  # mirroring wraps more than once


def test_grouped_deconv_is_left_alone() -> None:
    net = nn.Sequential(nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, groups=2), nn.ConvTranspose2d(4, 1, 3))
    assert convert_deconvs(net) == 1
    assert isinstance(net[0], nn.ConvTranspose2d) and isinstance(net[1], SubPixelDeconv)


def test_sigmoid_tanh_equals_tanh() -> None:
    x = torch.linspace(-30, 30, 600_000).reshape(1, 1, 1000, 600)
    assert float((SigmoidTanh()(x) - torch.tanh(x)).abs().max()) < 5e-7
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Sequential(nn.Tanh()), nn.Conv2d(2, 2, 3, padding=1))
    net.requires_grad_(False)
    x = torch.randn(2, 1, 17, 9) * 4
    expected = net(x)
    weight = net[0].weight.clone()
    assert prepare_for_cpu(net) == {"deconv": 0, "tanh": 2, "pixel_shuffle": 0, "pointwise": 0}
    assert not any(isinstance(m, nn.Tanh) for m in net.modules())
    # the tanh after a convolution takes its doubled output; the nested one has no convolution before it
    assert isinstance(net[1], PrescaledSigmoidTanh) and isinstance(net[2][0], SigmoidTanh)
    assert torch.equal(net[0].weight, weight * 2)
    assert float((net(x) - expected).abs().max()) < 1e-6


def test_tanh_between_convolutions_hands_on_half_tanh() -> None:
    """ESPCN's shape: conv, tanh, conv, tanh, conv. Each tanh becomes sigmoid - 1/2 of a doubled input, the
    convolution after it takes doubled weights (its bias as it was), and the zero padding of every layer
    still stands for a tanh of 0, so the borders match too."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.Tanh(), nn.Conv2d(8, 4, 3, padding=1), nn.Tanh(),
                        nn.Conv2d(4, 16, 3, padding=1), nn.PixelShuffle(4)).requires_grad_(False)
    x = torch.rand(2, 1, 13, 10)
    expected = net(x)
    w0, w2, b2, w4, b4 = (t.clone() for t in (net[0].weight, net[2].weight, net[2].bias, net[4].weight, net[4].bias))
    assert prepare_for_cpu(net)["tanh"] == 2
    assert isinstance(net[1], PrescaledHalfTanh) and isinstance(net[3], PrescaledHalfTanh)
    assert torch.equal(net[0].weight, w0 * 2)
    assert torch.equal(net[2].weight, w2 * 4) and torch.equal(net[2].bias, b2 * 2)  # follows one, feeds one
    assert torch.equal(net[4].weight, w4 * 2) and torch.equal(net[4].bias, b4)
    assert float((net(x) - expected).abs().max()) < 1e-6


@pytest.mark.parametrize("out_channels", [1, 3, 64])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_nhwc_pixel_shuffle_equals_pixel_shuffle(out_channels: int, layout: torch.memory_format) -> None:
    x = torch.randn(2, out_channels * 16, 7, 5).contiguous(memory_format=layout)
    out = pixel_shuffle(x, 4)
    assert torch.equal(out, F.pixel_shuffle(x, 4))
    if out_channels > 1:  # the next layer gets the layout it was given
        assert out.is_contiguous(memory_format=layout)
    net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.PixelShuffle(4))
    assert prepare_for_cpu(net)["pixel_shuffle"] == 1 and not isinstance(net[1], nn.PixelShuffle)


def test_pointwise_convs_keep_their_output_with_dilation_2() -> None:
    """A 1x1 kernel has no taps for dilation to spread: the same output, any padding, stride and layout. One
    thread and a batch under 16, where the rewrite moves these layers from PyTorch's GEMM fallback to oneDNN."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 56, 3, padding=1), nn.Conv2d(56, 12, 1), nn.PReLU(12),
                        nn.Conv2d(12, 8, 1, padding=1, bias=False), nn.Conv2d(8, 4, 1, stride=2))
    rewritten = copy.deepcopy(net)
    assert route_pointwise_convs_to_onednn(rewritten) == 3
    assert [m.dilation for m in rewritten if isinstance(m, nn.Conv2d)] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for layout in (torch.channels_last, torch.contiguous_format):
                x = torch.randn(3, 3, 19, 14).contiguous(memory_format=layout)
                expected = net.to(memory_format=layout)(x)
                out = rewritten.to(memory_format=layout)(x)
                assert out.shape == expected.shape == (3, 4, 11, 8)
                assert float((out - expected).abs().max()) < 1e-5
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(("name", "rewritten"), [("fsrcnn_x4", nn.ConvTranspose2d), ("fsrcnn_x3", nn.ConvTranspose2d),
                                                 ("lapsrn_x4", nn.ConvTranspose2d), ("espcn_x4", nn.Tanh),
                                                 ("espcn_x2", nn.PixelShuffle)])
def test_cpu_descriptor_rewrites_layers_and_keeps_its_output(name: str, rewritten: type[nn.Module]) -> None:
    catalog = Catalog.load()
    card = catalog.get(name)
    desc = load_descriptor(card, card.scales[0], catalog=catalog)
    assert not any(isinstance(m, rewritten) for m in desc.module.modules())
    # the same weights in the architecture as trained (transposed convolutions, tanh)
    plain = arch_spec(card.architecture).factory(scale=card.scales[0], **card.arch_args)
    plain.load_state_dict(load_file(str(catalog.folder(name) / card.weights_file)))
    reference = dataclasses.replace(desc, module=plain.eval(), channels_last=False)
    assert any(isinstance(m, rewritten) for m in reference.module.modules())
    x = torch.rand(1, 3, 23, 29)
    assert float((desc(x) - reference(x)).abs().max()) < 1e-5


def test_ycbcr_round_trip_and_matlab_values() -> None:
    rgb = torch.rand(2, 3, 11, 7, dtype=torch.float64)
    ycc = rgb_to_ycbcr(rgb)
    assert torch.allclose(ycbcr_planes_to_rgb(ycc[:, :1], ycc[:, 1:]), rgb, atol=1e-12)
    # MATLAB rgb2ycbcr of pure white and black: Y = 235 and 16, chroma 128
    ends = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    assert torch.allclose(rgb_to_ycbcr(ends).flatten() * 255, torch.tensor([235.0, 16, 128, 128, 128, 128],
                                                                          dtype=torch.float64), atol=1e-9)
    # any input layout (the pipeline hands over permuted HWC batches)
    hwc = rgb.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert torch.allclose(rgb_to_ycbcr(hwc), ycc, atol=1e-12)
