"""When a network may run in bf16: the safety threshold, the CPU's bf16 support, and whether bf16 pays.

A card carries two safety measurements, because the two devices run different code: CUDA runs the
network as trained (`half_precision_safe`, measured by the trainer on its device), while the CPU runs
it rewritten for oneDNN (`model_store.cpu_inference`), and some rewrites lose more in bf16 than the
original does: ESPCN's tanh, computed as a sigmoid minus 1/2, costs 0.04-0.08 dB of Set5 in bf16 on the
CPU against < 0.02 on CUDA. `cpu_bf16_psnr_delta` is measured through the CPU path itself by
`python -m model_store.complete_cards DIR` on a CPU with native bf16. Whether bf16 also pays on a given
CPU depends on the network (oneDNN's bf16 kernels double SRCNN's and EDSR's speed on AVX512-BF16 and
halve FSRCNN's), so the engine times both once per model (`InferenceEngine.serving_dtype`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

HALF_SAFE_DB = 0.02  # bf16 may move Set5 PSNR by less than this for a model to be served in it
BF16_MIN_SPEEDUP = 1.15  # below this a CPU keeps fp32: timing noise, and nothing worth the rounding


def cpu_has_native_bf16() -> bool:
    """oneDNN runs bf16 in hardware here (AVX512-BF16, AMX); elsewhere it emulates it, many times slower."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_bf16_safe(delta_db: float | None) -> bool:
    """A card's CPU bf16 measurement allows bf16 on this CPU: measured, small, and native here."""
    return delta_db is not None and delta_db < HALF_SAFE_DB and cpu_has_native_bf16()


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
