"""When a network may run in bf16: the safety threshold, the CPU's bf16 support, and whether bf16 pays.

A card carries two safety measurements, because the two devices run different code: CUDA runs the
network as trained (`half_precision_safe`, measured by the trainer on its device), while the CPU runs
it rewritten for oneDNN (`model_store.cpu_inference`), where rounding falls elsewhere (autocast over
ESPCN's rewritten tanh lost 0.045-0.18 dB of Set5; its bf16 twin, which the CPU serves instead, loses
0.002-0.03). `cpu_bf16_psnr_delta` is measured through the CPU path itself by
`python -m model_store.complete_cards DIR` on a CPU where oneDNN runs bf16. Whether bf16 also pays on a given
CPU depends on the network (oneDNN's bf16 kernels double SRCNN's and EDSR's speed on AVX512-BF16 and
halve FSRCNN's), so it is timed once per model (`cpu_serving_dtype`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from model_store.host import cpu_has_bf16_units, read_cpuinfo

if TYPE_CHECKING:
    from model_store.registry import SRDescriptor

log = logging.getLogger(__name__)

HALF_SAFE_DB = 0.02  # bf16 may move Set5 PSNR by less than this for a model to be served in it
BF16_MIN_SPEEDUP = 1.15  # below this a CPU keeps fp32: timing noise, and nothing worth the rounding


def cpu_trains_faster_in_bf16() -> bool:
    """bf16 autocast pays for training here: oneDNN runs bf16 and the CPU computes it in hardware. On
    AVX-512 CPUs without AVX512-BF16 or AMX oneDNN converts to fp32 instead, and a training step is ~4x
    slower than fp32 (Intel Xeon, Ice Lake class, one thread, NHWC: EDSR x2 8 x 64² 0.60 vs 2.26 s,
    LapSRN x2 4 x 96² 0.23 vs 0.94 s, FSRCNN x3 16 x 96² 0.055 vs 0.160 s). Unknown (no cpuinfo): fp32."""
    return cpu_runs_bf16() and cpu_has_bf16_units(read_cpuinfo())


def cpu_runs_bf16() -> bool:
    """oneDNN runs bf16 here, with bf16's numerics either way: in hardware with AVX512-BF16 or AMX
    (`cpu_trains_faster_in_bf16`), by conversion on other AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT CPUs (the
    engine serves bf16 only where it measures faster). Elsewhere (AVX2) only PyTorch's reference kernels
    do, many times slower, and oneDNN's bf16 calls (the fused twin) fail."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_bf16_safe(delta_db: float | None) -> bool:
    """A card's CPU bf16 measurement allows bf16 on this CPU: measured, small, and oneDNN runs it here."""
    return delta_db is not None and delta_db < HALF_SAFE_DB and cpu_runs_bf16()


def bf16_speedup(forward: Callable[[torch.dtype | None], object], rounds: int = 3) -> float:
    """fp32 time / bf16 time of `forward(dtype)`, each the best of `rounds` calls taken in turns after
    one untimed call (oneDNN builds its primitives, per dtype and shape, on the first)."""
    best = {None: float("inf"), torch.bfloat16: float("inf")}
    for dtype in best:
        forward(dtype)
    for _ in range(rounds):
        for dtype in best:
            t0 = time.perf_counter()
            forward(dtype)
            best[dtype] = min(best[dtype], time.perf_counter() - t0)
    return best[None] / max(best[torch.bfloat16], 1e-9)


def bf16_pays(speedup: float) -> bool:
    return speedup >= BF16_MIN_SPEEDUP


def cpu_serving_dtype(descriptor: SRDescriptor, h: int = 64, w: int = 64) -> torch.dtype | None:
    """bf16 for a CPU descriptor that allows it (`supports_half`: the card's CPU measurement, native
    bf16) and runs faster in it, timed on an h x w input of at most 64² (a fraction of a second); else
    None (fp32). Callers cache the answer per model: the engine, and the OpenCV anchor benchmark."""
    if not descriptor.supports_half:
        return None
    sample = torch.rand(1, 3, min(h, 64), min(w, 64), generator=torch.Generator().manual_seed(0))
    speedup = bf16_speedup(lambda dtype: descriptor(sample, dtype))
    chosen = torch.bfloat16 if bf16_pays(speedup) else None
    log.info("%s x%d: bf16 is %.2fx fp32's speed on this CPU: serving in %s", descriptor.name,
             descriptor.scale, speedup, "bf16" if chosen else "fp32")
    return chosen
