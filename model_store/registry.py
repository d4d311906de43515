"""The architecture registry and model descriptors: how the worker, training and evaluation get a
network. Explicit: every architecture module is listed in `_ARCH_MODULES` and registers itself with
`@register_arch`; an unknown or duplicate id is an error.

Callers see only `SRDescriptor`: scale, channels, dtype support, tiling needs and `__call__`, which
owns the Y/CbCr split, clamping and `inference_mode`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from model_store import precision
from model_store.allocator import retain_freed_memory
from model_store.card import Catalog, ModelCard
from model_store.resize import imresize_torch

# One module per architecture; importing a module registers what it defines.
_ARCH_MODULES: tuple[str, ...] = (
    "model_store.archs.bicubic",
    "model_store.archs.srcnn",
    "model_store.archs.fsrcnn",
    "model_store.archs.espcn",
    "model_store.archs.vdsr",
    "model_store.archs.lapsrn",
    "model_store.archs.srresnet",
    "model_store.archs.edsr",
    "model_store.archs.swinir",
    "model_store.archs.esrgan",  # third-party ESRGAN / Real-ESRGAN checkpoints (users' models)
    "model_store.archs.burst_shift_add",
    "model_store.archs.misr_gru",
    "model_store.archs.shift_pool",
)

ArchFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ArchSpec:
    id: str
    factory: ArchFactory  # typed keyword-only constructor: factory(scale=..., **arch_args)
    channels: str  # "y" or "rgb": what the network itself consumes
    kind: str = "single"  # "single" or "burst"
    trainable: bool = True


_ARCHS: dict[str, ArchSpec] = {}
_loaded = False


def register_arch(
    arch_id: str, *, channels: str, kind: str = "single", trainable: bool = True
) -> Callable[[ArchFactory], ArchFactory]:
    def deco(factory: ArchFactory) -> ArchFactory:
        if arch_id in _ARCHS:
            raise ValueError(f"architecture {arch_id!r} registered twice")
        _ARCHS[arch_id] = ArchSpec(arch_id, factory, channels, kind, trainable)
        return factory

    return deco


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for module in _ARCH_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real import error inside an existing module
                raise
    _loaded = True


def list_archs() -> list[str]:
    _ensure_loaded()
    return sorted(_ARCHS)


def arch_spec(arch_id: str) -> ArchSpec:
    _ensure_loaded()
    if arch_id not in _ARCHS:
        raise KeyError(f"unknown architecture {arch_id!r}; registered: {sorted(_ARCHS)}")
    return _ARCHS[arch_id]


def create_model(arch_id: str, *, scale: int, **arch_args: object) -> nn.Module:
    return arch_spec(arch_id).factory(scale=scale, **arch_args)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# BT.601 as MATLAB rgb2ycbcr, on [0, 1] data: the Y-channel models were trained on this.
_RGB2YCBCR = (
    torch.tensor(
        [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=torch.float64
    )
    / 255.0
)
_YCBCR_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64) / 255.0


_YCBCR2RGB = torch.linalg.inv(_RGB2YCBCR)


def _planes_matmul(m: torch.Tensor, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`m` (c, k) times the k planes of `x` (B, k, H, W), plus `bias` (c,): one batched GEMM (B, c, H, W).
    BLAS runs it several times faster than PyTorch's CPU path for a 1x1 convolution of so few channels."""
    b, k, h, w = x.shape
    out = torch.baddbmm(bias.view(1, -1, 1), m.expand(b, -1, -1), x.reshape(b, k, h * w))
    return out.view(b, -1, h, w)


class _ColourConstants(NamedTuple):
    to_ycc: torch.Tensor  # (3, 3)
    ycc_offset: torch.Tensor  # (3,)
    chroma_to_rgb: torch.Tensor  # (3, 2): the Cb/Cr columns of the inverse
    rgb_bias: torch.Tensor  # (3,)
    y_weight: torch.Tensor  # (1, 3, 1): the Y column of the inverse, broadcast over pixels


@functools.cache
def _colour_constants(device: torch.device, dtype: torch.dtype) -> _ColourConstants:
    """The conversion matrices on `device`, made once: a fresh copy per call would be a host-to-device
    transfer (and on CUDA a stream synchronisation) for every batch."""
    m = _YCBCR2RGB.to(device, dtype)
    return _ColourConstants(
        to_ycc=_RGB2YCBCR.to(device, dtype),
        ycc_offset=_YCBCR_OFFSET.to(device, dtype),
        chroma_to_rgb=m[:, 1:].contiguous(),
        rgb_bias=-(_YCBCR2RGB @ _YCBCR_OFFSET).to(device, dtype),
        y_weight=m[:, 0].reshape(1, 3, 1).contiguous(),
    )


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    c = _colour_constants(x.device, x.dtype)
    return _planes_matmul(c.to_ycc, x, c.ycc_offset)


def ycbcr_planes_to_rgb(y: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """RGB from Y (B, 1, H, W) and Cb/Cr (B, 2, H, W), the inverse of `rgb_to_ycbcr`, without stacking
    the planes first: the chroma GEMM, then Y added to every channel with its weight (255/219 in all three)."""
    c = _colour_constants(chroma.device, chroma.dtype)
    out = _planes_matmul(c.chroma_to_rgb, chroma, c.rgb_bias)
    b, _, h, w = out.shape
    out.view(b, 3, h * w).addcmul_(c.y_weight, y.reshape(b, 1, h * w))
    return out


class WeightsMismatchError(RuntimeError):
    pass


@dataclass
class SRDescriptor:
    """A loaded single-image model as the worker sees it.

    `__call__` takes RGB float in [0, 1], shape (B, 3, h, w) on the descriptor's device, and returns
    (B, 3, h*scale, w*scale) clamped to [0, 1]. Y-channel networks get Y and the chroma is upsampled
    bicubically here, so every caller treats every model the same.
    """

    card: ModelCard
    scale: int
    module: nn.Module
    device: torch.device
    channels: str
    supports_half: bool  # bf16 is safe for this model on this device
    receptive_field: int
    size_multiple: int
    channels_last: bool = False
    # bf16 copy of the network that serves bf16 on a CPU in place of autocast (cpu_inference.bf16_twin)
    bf16_module: nn.Module | None = None

    @property
    def name(self) -> str:
        return self.card.name

    @torch.inference_mode()
    def __call__(self, rgb: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        x = rgb.to(self.device, torch.float32)
        if self.channels == "y":
            ycc = rgb_to_ycbcr(x)
            y = self.network(ycc[:, :1], dtype)
            chroma = imresize_torch(ycc[:, 1:], scale=float(self.scale))
            out = ycbcr_planes_to_rgb(y, chroma)
        else:
            out = self.network(x, dtype)
        return out.clamp_(0.0, 1.0)

    def network(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The network alone on what it takes (Y or RGB), in `dtype` where the descriptor allows it."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if dtype is not None and dtype != torch.float32 and self.supports_half:
            if dtype == torch.bfloat16 and self.bf16_module is not None:
                return self._call_module(self.bf16_module, x.to(dtype)).float()
            with torch.autocast(device_type=self.device.type, dtype=dtype):
                out = self._call_module(self.module, x)
            return out.float()
        return self._call_module(self.module, x)

    def _call_module(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # multi-scale networks (VDSR) take the scale; everything else ignores it
        forward_scale = getattr(module, "forward_with_scale", None)
        if forward_scale is not None:
            return forward_scale(x, self.scale)
        return module(x)


def load_descriptor(
    card: ModelCard,
    scale: int,
    *,
    catalog: Catalog | None = None,
    device: str | torch.device = "cpu",
    channels_last: bool = True,
) -> SRDescriptor:
    """Build the network named by a card, load and verify its weights, and wrap it."""
    from safetensors.torch import load_file

    retain_freed_memory()  # once per process: activations are reused, not faulted back in (see there)
    spec = arch_spec(card.architecture)
    module = spec.factory(scale=scale, **card.arch_args)
    if card.weights_file:
        folder = catalog.folder(card.name) if catalog else Path(__file__).resolve().parent / "weights"
        path = folder / card.weights_file
        digest = sha256_file(path)
        if card.weights_sha256 and digest != card.weights_sha256:
            raise WeightsMismatchError(
                f"{path.name}: sha256 {digest} does not match the card's {card.weights_sha256}"
            )
        state = load_file(str(path))
        module.load_state_dict(state, strict=True)
    module.eval().requires_grad_(False)
    dev = torch.device(device)
    bf16_module = None
    if dev.type == "cpu":
        from model_store.cpu_inference import bf16_twin, prepare_for_cpu

        # from the untouched network, before the rewrites below; only where oneDNN runs bf16 (its fused
        # kernels need AVX-512 BW/VL/DQ or AVX-NE-CONVERT): nowhere else is bf16 served on a CPU
        bf16_module = bf16_twin(module) if precision.cpu_runs_bf16() else None
        prepare_for_cpu(module)  # same operators, faster CPU kernels (deconv, tanh)
    # NHWC: oneDNN's and cuDNN's fast layout (CPU, 1 thread: 4-30% faster for every shipped single-image
    # model, no slower anywhere; on GPUs the tensor-core kernels). Burst models reshape 5-D inputs
    # inside and gain nothing (MISR-GRU loses 10%): they ask for NCHW.
    module.to(dev, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return SRDescriptor(
        card=card,
        scale=scale,
        module=module,
        device=dev,
        channels=card.channels,
        # safe in bf16 on this device: each device's own measurement (model_store.precision)
        supports_half=(precision.cpu_bf16_safe(card.cpu_bf16_psnr_delta) if dev.type == "cpu"
                       else card.half_precision_safe),
        receptive_field=card.receptive_field,
        size_multiple=card.size_multiple,
        channels_last=channels_last,
        bf16_module=bf16_module,
    )
