"""bf16 on a CPU: only where the card's CPU measurement allows it and the CPU runs bf16 natively, and
then only for networks it makes faster (measured once per model by the engine).

A CPU's speed cannot be chosen here, so the timing (`precision.bf16_speedup`) is replaced where a test
needs one answer or the other; everything else runs for real, emulated where this CPU lacks bf16."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model_store import precision
from model_store.card import SHIPPED_WEIGHTS_DIR, Catalog, ModelCard
from model_store.complete_cards import complete_card
from model_store.cpu_inference import FusedConvTanh
from model_store.data import benchmark_pairs
from model_store.evaluate import evaluate_pairs
from model_store.metrics import psnr
from model_store.registry import load_descriptor
from worker.engine import BatchPolicy, EngineConfig, InferenceEngine

CATALOG = Catalog.load()


def test_speedup_is_measured_in_turns_and_thresholded() -> None:
    calls: list[torch.dtype | None] = []

    def forward(dtype: torch.dtype | None) -> None:
        calls.append(dtype)
        time.sleep(0.02 if dtype is None else 0.005)

    assert precision.bf16_speedup(forward, rounds=3) > 2.0  # sleeps only ever run long: fp32 >= 20 ms
    assert calls == [None, torch.bfloat16] * 4  # one untimed call each, then turns
    assert precision.bf16_pays(1.5) and not precision.bf16_pays(1.05)


@pytest.mark.parametrize("native", [True, False])
def test_cpu_safety_needs_a_small_measured_delta_and_native_bf16(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_runs_bf16", lambda: native)
    assert precision.cpu_bf16_safe(0.01) is native
    assert not precision.cpu_bf16_safe(0.05) and not precision.cpu_bf16_safe(None)


def test_descriptors_take_the_cpu_measurement_not_the_cuda_one() -> None:
    shipped = CATALOG.get("srcnn_x4")
    cuda_only = shipped.model_copy(update={"half_precision_safe": True, "cpu_bf16_psnr_delta": 0.05})
    assert not load_descriptor(cuda_only, 4, catalog=CATALOG).supports_half
    cpu_only = shipped.model_copy(update={"half_precision_safe": False, "cpu_bf16_psnr_delta": 0.01})
    assert load_descriptor(cpu_only, 4, catalog=CATALOG).supports_half is precision.cpu_runs_bf16()
    unmeasured = shipped.model_copy(update={"half_precision_safe": True, "cpu_bf16_psnr_delta": None})
    assert not load_descriptor(unmeasured, 4, catalog=CATALOG).supports_half


def test_a_network_with_tanh_gets_a_fused_bf16_twin_where_onednn_runs_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    card = CATALOG.get("espcn_x4")
    here = load_descriptor(card, 4, catalog=CATALOG)
    # the twin's fused kernels are oneDNN's bf16 ones (AVX-512 BW/VL/DQ or AVX-NE-CONVERT): built only there
    assert (here.bf16_module is not None) is precision.cpu_runs_bf16()
    monkeypatch.setattr(precision, "cpu_runs_bf16", lambda: True)  # building runs nothing: any CPU
    twin = load_descriptor(card, 4, catalog=CATALOG).bf16_module
    assert twin is not None and load_descriptor(CATALOG.get("srcnn_x4"), 4, catalog=CATALOG).bf16_module is None
    assert sum(isinstance(m, FusedConvTanh) for m in twin.modules()) == 2  # both of ESPCN's conv + tanh
    assert not any(isinstance(m, torch.nn.Tanh) for m in twin.modules())
    assert all(p.dtype == torch.bfloat16 for p in twin.parameters())


@pytest.mark.skipif(not precision.cpu_runs_bf16(),
                    reason="oneDNN's bf16 kernels need AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT; this CPU has neither")
def test_the_fused_twin_keeps_bf16_within_the_bar_where_autocast_does_not() -> None:
    desc = load_descriptor(CATALOG.get("espcn_x4"), 4, catalog=CATALOG)
    desc.supports_half = True
    pairs = list(benchmark_pairs("Set5", 4))
    fp32 = evaluate_pairs(desc, pairs, dataset="Set5").psnr_y
    with_twin = evaluate_pairs(desc, pairs, dataset="Set5", dtype=torch.bfloat16).psnr_y
    desc.bf16_module = None  # autocast over the rewritten fp32 network (sigmoid - 1/2 for tanh / 2)
    autocast = evaluate_pairs(desc, pairs, dataset="Set5", dtype=torch.bfloat16).psnr_y
    assert abs(with_twin - fp32) < precision.HALF_SAFE_DB < abs(autocast - fp32)


@pytest.mark.parametrize("speedup", [2.0, 1.0])
def test_engine_serves_bf16_only_where_it_measured_faster(speedup: float, monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[str] = []

    def fake_speedup(forward: object) -> float:
        measured.append("once")
        return speedup

    monkeypatch.setattr(precision, "bf16_speedup", fake_speedup)
    desc = load_descriptor(CATALOG.get("fsrcnn_x4"), 4, catalog=CATALOG)
    desc.supports_half = True  # as on a CPU with native bf16 (the card's CPU delta is under the threshold)
    rng = np.random.default_rng(0)
    img = rng.random((40, 52, 3), dtype=np.float32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    fp32, bf16 = (desc(x, dtype)[0].permute(1, 2, 0).numpy() for dtype in (None, torch.bfloat16))
    assert psnr(bf16, fp32, peak=1.0) < 70  # the two differ: the test can tell which one was served

    eng = InferenceEngine(EngineConfig(tile_size=64, default_policy=BatchPolicy(1, 0.0))).start()
    try:
        first, stats = eng.upscale(desc, img)
        second, _ = eng.upscale(desc, img)
    finally:
        eng.stop()
    faster = speedup > precision.BF16_MIN_SPEEDUP
    expected = bf16 if faster else fp32
    assert psnr(first, expected, peak=1.0) > 100 and psnr(second, expected, peak=1.0) > 100
    assert stats.precision == ("bf16" if faster else "fp32")  # what the job's metrics report
    assert measured == ["once"]  # per model and scale, not per job
    assert eng.serving_dtype(desc) == (torch.bfloat16 if faster else None)

    off = InferenceEngine(EngineConfig(half_precision="off"))
    assert off.serving_dtype(desc) is None and measured == ["once"]


@pytest.mark.parametrize("native", [True, False])
def test_complete_cards_measures_the_cpu_delta_where_bf16_is_native(
    native: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # emulated bf16 gives the same numbers, under autocast: a network with no tanh, so no oneDNN-only twin
    monkeypatch.setattr(precision, "cpu_runs_bf16", lambda: native)
    shipped = ModelCard.model_validate_json((SHIPPED_WEIGHTS_DIR / "fsrcnn_x4.json").read_text())
    shutil.copy(SHIPPED_WEIGHTS_DIR / "fsrcnn_x4.safetensors", tmp_path)
    (tmp_path / "fsrcnn_x4.json").write_text(shipped.model_copy(update={"cpu_bf16_psnr_delta": None}).model_dump_json())

    completed = complete_card(tmp_path / "fsrcnn_x4.json", ["Set5"])
    if native:  # Set5 through the CPU path, fp32 against bf16, measured here independently
        desc = load_descriptor(shipped, 4, catalog=CATALOG)
        desc.supports_half = True
        pairs = list(benchmark_pairs("Set5", 4))
        fp32, bf16 = (evaluate_pairs(desc, pairs, dataset="Set5", dtype=d).psnr_y for d in (None, torch.bfloat16))
        assert completed.cpu_bf16_psnr_delta == round(abs(bf16 - fp32), 4) > 0
    else:
        assert completed.cpu_bf16_psnr_delta is None
    assert completed.results == shipped.results  # nothing else measured again
