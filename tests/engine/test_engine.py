"""The batching engine on CPU: tiled == untiled for every shipped convolutional model, many jobs of
different sizes and models interleaved through one device thread, OOM back-off, cancel while held."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from model_store.card import Catalog, ModelCard
from model_store.metrics import psnr
from model_store.registry import SRDescriptor, load_descriptor
from model_store.tiling import Stitcher, plan_tiles
from srserve.imaging import to_uint8
from tests.engine.concurrent_jobs import upscale_concurrently
from worker.engine import BatchPolicy, EngineConfig, InferenceEngine, JobCanceled, OutOfMemory

CATALOG = Catalog.load()
# Transformers attend within shifted windows whose partition depends on the tile origin: not exact.
CONV_CARDS = [c for c in CATALOG if c.kind == "single" and c.architecture not in ("swinir",)]


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 4 + 2, w // 4 + 2, 3)).astype(np.float32)
    up = torch.nn.functional.interpolate(
        torch.from_numpy(coarse).permute(2, 0, 1)[None], size=(h, w), mode="bilinear", align_corners=False
    )
    return up[0].permute(1, 2, 0).numpy().copy()


def fp32_config(**settings: object) -> EngineConfig:
    """Engines here run fp32: tiled == untiled is a property of the arithmetic, and on a CPU with native
    bf16 `half_precision="auto"` serves some models in bf16 (tests/engine/test_cpu_bf16.py)."""
    return EngineConfig(half_precision="off", **settings)  # type: ignore[arg-type]


def _untiled(desc: SRDescriptor, img: np.ndarray) -> np.ndarray:
    return desc(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()


@pytest.fixture
def engine() -> Iterator[InferenceEngine]:
    eng = InferenceEngine(fp32_config(tile_size=48, default_policy=BatchPolicy(8, 0.01))).start()
    yield eng
    eng.stop()


# the CUDA arrangement on CPU: padded batches through reused per-slot staging buffers, stitched on
# a completion thread while the next batch computes (one slot: handed out before its batch is stitched,
# it would mix jobs up)
PIPELINED = fp32_config(
    tile_size=48, default_policy=BatchPolicy(8, 0.01), bucket_batches=True, pipeline_depth=1, staging=True
)


@pytest.fixture(params=["inline", "pipelined"])
def any_engine(request: pytest.FixtureRequest) -> Iterator[InferenceEngine]:
    inline = fp32_config(tile_size=48, default_policy=BatchPolicy(8, 0.01))
    config = PIPELINED if request.param == "pipelined" else inline
    eng = InferenceEngine(config).start()
    yield eng
    eng.stop()


@pytest.mark.parametrize("card", CONV_CARDS, ids=lambda c: c.name)
def test_tiled_equals_untiled(card: ModelCard, engine: InferenceEngine) -> None:
    scale = card.scales[0]
    desc = load_descriptor(card, scale, catalog=CATALOG)
    h, w = 70, 101  # not multiples of anything: edge tiles shift inward
    img = _image(h, w)
    tile = max(48, 2 * desc.receptive_field + 8)
    assert len(plan_tiles(h, w, tile, desc.receptive_field, desc.size_multiple).tiles) > 1, "test must tile"
    tiled, stats = engine.upscale(desc, img, tile_size=tile)
    ref = _untiled(desc, img)
    assert tiled.shape == ref.shape == (h * scale, w * scale, 3)
    assert stats.tiles > 1
    assert psnr(tiled, ref, peak=1.0) >= 60.0


def test_fitted_tiles_split_the_image_evenly() -> None:
    # 256 px, tile 128, overlap 8: fixed tiles start at 0, 112, 128 (the last overlaps its neighbour by
    # 112 px); fitted ones are 96 px at 0, 80, 160: the same three tiles, 25% less to compute per axis
    fixed, fitted = plan_tiles(256, 256, 128, 8), plan_tiles(256, 256, 128, 8, fit=True)
    assert (fixed.tile_h, fitted.tile_h) == (128, 96)
    assert [t.y0 for t in fitted.tiles[::3]] == [0, 80, 160] and len(fitted.tiles) == len(fixed.tiles) == 9
    assert plan_tiles(200, 90, 256, 8, fit=True).shape == (200, 90)  # smaller than the tile: one, whole


def test_fit_step_puts_multi_tile_axes_on_a_grid_and_keeps_whole_axes_exact() -> None:
    # the CUDA default (largest tile 768, 32-px grid): a 512² image is one tile, where fixed 256² tiles
    # were nine (2.25x its pixels); 1080p needs 6 tiles on the grid instead of 40 fixed 256² ones
    assert len(plan_tiles(512, 512, 768, 8, fit=True, fit_step=32).tiles) == 1
    hd = plan_tiles(1080, 1920, 768, 8, fit=True, fit_step=32)
    assert hd.tile_h % 32 == 0 and hd.tile_w % 32 == 0 and len(hd.tiles) == 6
    computed = len(hd.tiles) * hd.tile_h * hd.tile_w
    assert computed < 1.2 * 1080 * 1920 < len(plan_tiles(1080, 1920, 256, 8).tiles) * 256 * 256
    # nearby sizes share a shape (they batch together); an axis that fits one tile is never padded
    assert plan_tiles(1100, 1900, 768, 8, fit=True, fit_step=32).shape == hd.shape
    assert plan_tiles(300, 2000, 768, 8, fit=True, fit_step=32).tile_h == 300


def test_gridded_fitted_tiles_of_several_jobs_batch_together_and_equal_untiled() -> None:
    card = CATALOG.get("fsrcnn_x4")
    desc = load_descriptor(card, 4, catalog=CATALOG)
    config = fp32_config(tile_size=48, default_policy=BatchPolicy(8, 0.05), fit_tiles=True, fit_step=16,
                          bucket_batches=True)
    plans = [plan_tiles(h, w, 48, desc.receptive_field, fit=True, fit_step=16) for h, w in ((70, 101), (66, 97))]
    assert plans[0].shape == plans[1].shape and len(plans[0].tiles) > 1  # two sizes, one tile shape
    imgs = [_image(70, 101, seed=1), _image(66, 97, seed=2)]
    eng = InferenceEngine(config).start()
    try:
        results = upscale_concurrently(eng, [(desc, img) for img in imgs])
    finally:
        eng.stop()
    assert max(batch for _, batch in results.values()) > 1
    for i, img in enumerate(imgs):
        assert psnr(results[i][0], _untiled(desc, img), peak=1.0) >= 60.0


def test_batch_pixel_cap_sizes_batches_by_tile_area() -> None:
    # four one-tile jobs of 40², room for 64 tiles but only 2 x 40² pixels: batches of 2
    desc = load_descriptor(CATALOG.resolve("bicubic", 2), 2, catalog=CATALOG)
    config = fp32_config(tile_size=48, default_policy=BatchPolicy(64, 0.2), max_batch_pixels=2 * 40 * 40)
    eng = InferenceEngine(config).start()
    try:
        results = upscale_concurrently(eng, [(desc, _image(40, 40, seed=i)) for i in range(4)])
    finally:
        eng.stop()
    assert len(results) == 4 and max(batch for _, batch in results.values()) == 2


@pytest.mark.parametrize("card", [CATALOG.get(n) for n in ("fsrcnn_x4", "espcn_x2", "lapsrn_x4")], ids=lambda c: c.name)
def test_tiles_fitted_to_the_image_equal_untiled(card: ModelCard) -> None:
    scale = card.scales[0]
    desc = load_descriptor(card, scale, catalog=CATALOG)
    h, w = 70, 101
    tile = max(48, 2 * desc.receptive_field + 8)
    fixed = plan_tiles(h, w, tile, desc.receptive_field, desc.size_multiple)
    fitted = plan_tiles(h, w, tile, desc.receptive_field, desc.size_multiple, fit=True)
    assert len(fitted.tiles) == len(fixed.tiles) > 1  # as many tiles, less overlap to compute
    assert fitted.tile_h <= fixed.tile_h and fitted.tile_w <= fixed.tile_w
    eng = InferenceEngine(fp32_config(tile_size=tile, default_policy=BatchPolicy(1, 0.0), fit_tiles=True)).start()
    try:
        img = _image(h, w)
        tiled, stats = eng.upscale(desc, img)
    finally:
        eng.stop()
    assert stats.tiles == len(fitted.tiles)
    assert psnr(tiled, _untiled(desc, img), peak=1.0) >= 60.0


def test_a_one_tile_job_keeps_its_batch_output_and_a_shared_one_is_copied() -> None:
    one = plan_tiles(20, 30, 64, 4)
    out = np.random.default_rng(0).random((40, 60, 3), dtype=np.float32)
    adopted = Stitcher(one, 2)
    adopted.add(one.tiles[0], out, owned=True)
    assert adopted.output is out  # no copy, no fresh output to fault in
    copied = Stitcher(one, 2)
    copied.add(one.tiles[0], out)  # a staging slot's view: the next batch overwrites it
    assert copied.output is not out and np.array_equal(copied.output, out)
    several = plan_tiles(20, 30, 12, 2)
    stitched = Stitcher(several, 2)
    for t in several.tiles:  # owned or not, tiles of a larger image are copied into their place
        window = out[t.y0 * 2 : (t.y0 + several.tile_h) * 2, t.x0 * 2 : (t.x0 + several.tile_w) * 2]
        stitched.add(t, window.copy(), owned=True)
    assert stitched.complete and np.array_equal(stitched.output, out)


def test_interleaved_jobs_of_different_models_and_sizes(any_engine: InferenceEngine) -> None:
    engine = any_engine
    # the cheapest networks: the test is about interleaving, not about any model
    light = sorted((c for c in CONV_CARDS if c.name != "bicubic"), key=lambda c: c.flops_per_output_pixel)
    cards = [CATALOG.resolve("bicubic", 2), *light][:3]
    descs = [load_descriptor(c, c.scales[0], catalog=CATALOG) for c in cards]
    jobs = [(descs[i % len(descs)], _image(30 + 7 * i, 40 + 5 * i, seed=i)) for i in range(9)]
    results = upscale_concurrently(engine, jobs)
    assert len(results) == len(jobs)
    for i, (desc, img) in enumerate(jobs):
        out, _ = results[i]
        assert psnr(out, _untiled(desc, img), peak=1.0) >= 60.0, f"job {i} ({desc.name}) got another job's tiles?"
    assert max(b for _, b in results.values()) > 1, "tiles of concurrent jobs never shared a batch"


@pytest.mark.parametrize("name", ["fsrcnn_x2", "edsr_baseline_x2"])
def test_eight_bit_output_is_the_float_output_rounded(any_engine: InferenceEngine, name: str) -> None:
    """Rounded on the device (a quarter of the bytes to copy and stitch), to exactly what the job's
    to_uint8 makes of the float output; 8-bit and float jobs of one model never share a batch's dtype.
    A Y-channel network's output is planar (interleaved after the cast on CPU), an RGB one's NHWC."""
    desc = load_descriptor(CATALOG.get(name), 2, catalog=CATALOG)
    for h, w in [(70, 101), (20, 24)]:  # several tiles, and one
        img = _image(h, w, seed=h)
        with ThreadPoolExecutor(2) as pool:  # in flight together
            eight_job = pool.submit(any_engine.upscale, desc, img, eight_bit=True)
            float_job = pool.submit(any_engine.upscale, desc, img)
            eight, floats = eight_job.result(timeout=120)[0], float_job.result(timeout=120)[0]
        assert eight.dtype == np.uint8 and floats.dtype == np.float32
        assert np.array_equal(eight, to_uint8(floats))


def test_padded_batch_sizes_are_powers_of_two_up_to_the_limit() -> None:
    eng = InferenceEngine(EngineConfig(bucket_batches=True))
    assert [eng.padded_batch_size(n, 12) for n in (1, 2, 3, 5, 8, 9, 12)] == [1, 2, 4, 8, 8, 12, 12]
    assert InferenceEngine(EngineConfig(device="cpu")).padded_batch_size(5, 16) == 5  # CPU: off by default


def test_bucketed_batches_pad_with_tiles_that_never_reach_a_job(caplog: pytest.LogCaptureFixture) -> None:
    from prometheus_client import CollectorRegistry

    from worker.engine import EngineMetrics

    card = next(c for c in CONV_CARDS if c.architecture == "fsrcnn")
    desc = load_descriptor(card, card.scales[0], catalog=CATALOG)
    metrics = EngineMetrics(CollectorRegistry())
    eng = InferenceEngine(
        fp32_config(tile_size=48, default_policy=BatchPolicy(8, 0.02), bucket_batches=True), metrics
    ).start()
    jobs = [(desc, _image(50 + 9 * i, 60 + 4 * i, seed=i)) for i in range(5)]
    caplog.set_level("INFO", logger="worker.engine")
    try:
        results = upscale_concurrently(eng, jobs)
    finally:
        eng.stop()
    assert len(results) == len(jobs)
    for i, (_, img) in enumerate(jobs):
        assert psnr(results[i][0], _untiled(desc, img), peak=1.0) >= 60.0, f"job {i} got a padding tile?"
    assert metrics.padding_tiles.labels(desc.name)._value.get() > 0, "no batch was ever padded"
    assert any("warmed" in r.message for r in caplog.records), "the standard tile shape was never warmed up"


@pytest.mark.parametrize("pipeline_depth", [0, 2])
def test_out_of_memory_halves_batch_then_tile(pipeline_depth: int) -> None:
    desc = load_descriptor(CATALOG.resolve("bicubic", 2), 2, catalog=CATALOG)
    img = _image(100, 120)
    # a budget that fits one 32x32 tile but not one 64x64 tile, nor a batch of two 32s
    one_32 = 32 * 32 * 4 * (3 * 4 + 128)
    eng = InferenceEngine(fp32_config(tile_size=64, min_tile=16, memory_budget_bytes=one_32 + 1,
                                       pipeline_depth=pipeline_depth, staging=pipeline_depth > 0)).start()
    try:
        out, stats = eng.upscale(desc, img)
    finally:
        eng.stop()
    assert stats.oom_backoffs >= 1 and stats.tile_size <= 32 and stats.max_batch == 1
    assert psnr(out, _untiled(desc, img), peak=1.0) >= 60.0


def test_out_of_memory_at_the_smallest_tile_fails_the_job() -> None:
    desc = load_descriptor(CATALOG.resolve("bicubic", 2), 2, catalog=CATALOG)
    eng = InferenceEngine(fp32_config(tile_size=64, min_tile=32, memory_budget_bytes=1000)).start()
    try:
        with pytest.raises(OutOfMemory, match="does not fit"):
            eng.upscale(desc, _image(80, 80))
        assert eng.pending_tiles() == 0  # nothing of the failed job is left queued
    finally:
        eng.stop()


def test_cancel_while_held_drops_the_job_and_keeps_serving(any_engine: InferenceEngine) -> None:
    engine = any_engine
    desc = load_descriptor(CATALOG.resolve("bicubic", 4), 4, catalog=CATALOG)
    with pytest.raises(JobCanceled):
        engine.upscale(desc, _image(400, 400), cancel=lambda: True)
    out, _ = engine.upscale(desc, _image(20, 20))  # the device thread is still healthy
    assert out.shape == (80, 80, 3)
