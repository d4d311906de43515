"""Engine checks that need a CUDA GPU (run by bench/gpu/run_gpu.sh on the GPU box: `pytest -m gpu`).

Deselected by default (pyproject addopts `-m "not gpu"`), so CI on CPU neither runs nor skips them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_store.card import Catalog
from model_store.metrics import psnr
from model_store.registry import load_descriptor
from tests.engine.concurrent_jobs import upscale_concurrently
from worker.engine import BatchPolicy, EngineConfig, InferenceEngine
from worker.jobs import engine_config
from worker.settings import WorkerSettings

pytestmark = pytest.mark.gpu
CATALOG = Catalog.load()
CONV = [c for c in CATALOG if c.kind == "single" and c.architecture != "swinir"]


def _img(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).random((h, w, 3), dtype=np.float32)


@pytest.mark.parametrize("card", CONV, ids=lambda c: c.name)
def test_tiled_equals_untiled_on_cuda_fp32(card) -> None:  # type: ignore[no-untyped-def]
    s = card.scales[0]
    desc = load_descriptor(card, s, catalog=CATALOG, device="cuda")
    img = _img(200, 333)
    eng = InferenceEngine(EngineConfig(device="cuda", tile_size=96, half_precision="off")).start()
    try:
        out, stats = eng.upscale(desc, img)
    finally:
        eng.stop()
    ref = desc(torch.from_numpy(img).permute(2, 0, 1)[None].cuda())[0].permute(1, 2, 0).cpu().numpy()
    assert stats.tiles > 1
    assert psnr(out, ref, peak=1.0) >= 60.0


def test_worker_cuda_defaults_tile_on_the_grid_and_equal_untiled() -> None:
    # what a CUDA worker runs: tiles up to 768² fitted to the image on a 32-px grid, batched, bucketed
    config = engine_config(WorkerSettings(device="cuda", half_precision="off"), "cuda")
    step = config.fit_step
    desc = load_descriptor(CATALOG.get("fsrcnn_x4"), 4, catalog=CATALOG, device="cuda")
    img = _img(900, 1100)
    eng = InferenceEngine(config).start()
    try:
        out, stats = eng.upscale(desc, img)
    finally:
        eng.stop()
    ref = desc(torch.from_numpy(img).permute(2, 0, 1)[None].cuda())[0].permute(1, 2, 0).cpu().numpy()
    assert stats.tiles == 4 and stats.tile_size % step == 0
    assert psnr(out, ref, peak=1.0) >= 60.0


def test_real_cuda_oom_backs_off() -> None:
    card = max(CONV, key=lambda c: c.flops_per_output_pixel)
    desc = load_descriptor(card, card.scales[0], catalog=CATALOG, device="cuda")
    torch.cuda.set_per_process_memory_fraction(0.003)  # ~0.4 GiB on an H200
    try:
        eng = InferenceEngine(
            EngineConfig(device="cuda", tile_size=1024, min_tile=32, default_policy=BatchPolicy(64, 0.01))
        ).start()
        out, stats = eng.upscale(desc, _img(1024, 1024))
        eng.stop()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert out.shape[0] == 1024 * desc.scale
    assert stats.oom_backoffs >= 1


@pytest.mark.parametrize(("staging", "depth"), [(True, 3), (False, 0)], ids=["staged-pipelined", "plain"])
def test_interleaved_jobs_on_cuda(staging: bool, depth: int) -> None:
    """Several jobs of different models and sizes at once, through reused page-locked buffers with three
    batches in flight, and without either; every job must get exactly its own tiles back."""
    descs = [load_descriptor(c, c.scales[0], catalog=CATALOG, device="cuda") for c in CONV[:4]]
    jobs = [(descs[i % len(descs)], np.random.default_rng(i).random((90 + 13 * i, 120 + 7 * i, 3), dtype=np.float32))
            for i in range(12)]
    eng = InferenceEngine(EngineConfig(device="cuda", tile_size=64, half_precision="off", staging=staging,
                                       pipeline_depth=depth, default_policy=BatchPolicy(8, 0.01))).start()
    try:
        results = upscale_concurrently(eng, jobs)
    finally:
        eng.stop()
    assert len(results) == len(jobs)
    for i, (desc, img) in enumerate(jobs):
        ref = desc(torch.from_numpy(img).permute(2, 0, 1)[None].cuda())[0].permute(1, 2, 0).cpu().numpy()
        assert psnr(results[i][0], ref, peak=1.0) >= 60.0, f"job {i} ({desc.name}) got another job's tiles"
