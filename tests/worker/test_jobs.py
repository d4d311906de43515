"""The job body in-process (no RQ): blobs in, result + metrics out, stable error codes."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from redis import Redis
from rq.job import Job

from model_store.card import Catalog
from model_store.metrics import bicubic_upscale_uint8, quality_y
from srserve import imaging, jobspec
from srserve.blobstore import FilesystemBlobStore
from tests.service import images
from worker import pipeline
from worker.jobs import (
    JobState,
    WorkerContext,
    build_engine,
    default_torch_threads,
    engine_defaults,
    execute_upscale,
    get_worker_metrics,
)
from worker.settings import WorkerSettings

JOB_ID = "job-abcdefghijklmnop"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WorkerContext]:
    settings = WorkerSettings(blob_dir=tmp_path / "blobs", device="cpu")
    catalog = Catalog.load()
    engine = build_engine(settings, "cpu", None)
    yield WorkerContext(
        settings=settings,
        store=FilesystemBlobStore(settings.blob_dir),
        catalog=catalog,
        device="cpu",
        descriptors=pipeline.DescriptorCache(catalog, "cpu"),
        metrics=get_worker_metrics(),
        engine=engine,
    )
    engine.stop()


def _payload(
    ctx: WorkerContext, image: bytes, *, reference: bytes | None = None, **kw: object
) -> jobspec.UpscalePayload:
    ctx.store.put(jobspec.input_key(JOB_ID), image)
    if reference is not None:
        ctx.store.put(jobspec.reference_key(JOB_ID), reference)
    values: dict[str, object] = {
        "job_id": JOB_ID,
        "model": "bicubic",
        "scale": 4,
        "format": "png",
        "input_keys": [jobspec.input_key(JOB_ID)],
        "reference_key": jobspec.reference_key(JOB_ID) if reference is not None else None,
        "input": {"width": 1, "height": 1},
        "submitted_at": time.time() - 0.5,
    }
    values.update(kw)
    return jobspec.UpscalePayload.model_validate(values)


def test_result_metrics_and_cleanup(ctx: WorkerContext, data_dir: Path) -> None:
    lr_path, hr_path = data_dir / "eval/Set5/x4/img_003_LR.png", data_dir / "eval/Set5/x4/img_003_HR.png"
    outcome = execute_upscale(_payload(ctx, lr_path.read_bytes(), reference=hr_path.read_bytes()), ctx)
    lr, hr = imaging.load_rgb_uint8(str(lr_path)), imaging.load_rgb_uint8(str(hr_path))
    r = outcome.result
    assert (r.width, r.height) == (lr.shape[1] * 4, lr.shape[0] * 4)
    stored = ctx.store.get(r.key)
    assert len(stored) == r.bytes and r.content_type == "image/png"
    out = np.asarray(Image.open(io.BytesIO(stored)).convert("RGB"))
    offline = quality_y(out, hr, shave=4)
    m = outcome.metrics
    assert m.psnr_y == pytest.approx(offline.psnr_y, abs=1e-3)  # the stored image is what was measured
    assert m.psnr_y == pytest.approx(quality_y(bicubic_upscale_uint8(lr, 4), hr, shave=4).psnr_y, abs=0.05)
    assert m.bicubic_psnr_y is not None and abs(m.psnr_y - m.bicubic_psnr_y) < 0.05
    assert m.lr_consistency_psnr is not None and m.lr_consistency_psnr > 30
    assert m.device == "cpu" and m.model == "bicubic" and m.precision == "fp32"
    t = m.timings
    assert t.queue_wait_s is not None and t.queue_wait_s >= 0.4
    assert all(v is not None and v >= 0 for v in (t.decode_s, t.inference_s, t.encode_s, t.metrics_s))
    assert t.total_s is not None and t.total_s >= t.queue_wait_s
    # inputs are deleted once the result is stored
    assert not ctx.store.exists(jobspec.input_key(JOB_ID))
    assert not ctx.store.exists(jobspec.reference_key(JOB_ID))


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_other_formats_and_alpha(ctx: WorkerContext, fmt: str) -> None:
    outcome = execute_upscale(_payload(ctx, images.png(20, 12, mode="RGBA"), format=fmt, scale=2), ctx)
    img = Image.open(io.BytesIO(ctx.store.get(outcome.result.key)))
    assert img.format == fmt.upper() and img.size == (40, 24)
    assert img.mode == ("RGBA" if fmt == "webp" else "RGB")
    assert any("alpha" in n for n in outcome.metrics.notes)


def test_missing_input_fails_with_input_missing(ctx: WorkerContext) -> None:
    payload = _payload(ctx, images.png())
    ctx.store.delete_prefix(jobspec.job_prefix(JOB_ID))
    with pytest.raises(pipeline.InputMissingError) as err:
        execute_upscale(payload, ctx)
    assert err.value.code == "input_missing"


def test_garbage_input_fails_with_decode_failed(ctx: WorkerContext) -> None:
    with pytest.raises(pipeline.DecodeFailedError) as err:
        execute_upscale(_payload(ctx, images.truncated(images.png(64, 64))), ctx)
    assert err.value.code == "decode_failed"


def test_unknown_model_fails_with_model_unavailable(ctx: WorkerContext) -> None:
    with pytest.raises(pipeline.ModelUnavailableError):
        execute_upscale(_payload(ctx, images.png(), model="no_such_model"), ctx)


def test_bad_payload_is_refused() -> None:
    from worker.jobs import run_upscale

    with pytest.raises(pipeline.InvalidPayloadError):
        run_upscale({"job_id": "x"})


def test_job_state_batches_progress_and_cancel_into_few_round_trips(redis_conn: Redis) -> None:
    from rq import Queue

    job = Queue("jobstate-test", connection=redis_conn).enqueue("builtins.len", "x", meta={"progress": 0.0})
    state = JobState(job, job.id)
    state.sync_interval_s = 0.2

    def stored() -> float:
        return float(Job.fetch(job.id, connection=redis_conn).meta["progress"])

    try:
        state.progress(0.1, "decode")  # the first call syncs at once: a running job shows progress
        assert stored() == 0.1
        state.progress(0.5, "infer")  # within the interval: kept locally, no round trip
        redis_conn.set(jobspec.cancel_key(job.id), "1")
        assert stored() == 0.1 and not state.canceled()
        time.sleep(0.25)
        assert state.canceled()  # the next sync writes the pending progress and reads the cancel key
        assert stored() == 0.5
        with pytest.raises(pipeline.JobCanceledError):
            state.check()
    finally:
        redis_conn.delete(jobspec.cancel_key(job.id))
        job.delete()


def test_cpu_engine_batches_one_tile_unless_configured(tmp_path: Path) -> None:
    auto = build_engine(WorkerSettings(blob_dir=tmp_path, device="cpu"), "cpu", None)
    set_by_hand = build_engine(WorkerSettings(blob_dir=tmp_path, device="cpu", max_batch_size=4), "cpu", None)
    try:
        assert auto.config.default_policy.max_batch_size == 1
        assert auto.config.tile_size == 256 and auto.config.fit_tiles
        assert torch.get_num_threads() == default_torch_threads() == max(1, min(4, (os.cpu_count() or 1) // 2))
        assert set_by_hand.config.default_policy.max_batch_size == 4 and not set_by_hand.config.fit_tiles
    finally:
        auto.stop()
        set_by_hand.stop()


def test_cuda_engine_defaults_fit_tiles_on_a_grid_and_cap_batch_pixels() -> None:
    assert engine_defaults("cuda") == (768, 64, True, 32, 16 * 384 * 384)
    assert engine_defaults("cuda:1", max_batch_size=4, tile_size=512, max_batch_pixels=0) == (512, 4, True, 32, 0)
    assert engine_defaults("cpu") == (256, 1, True, 1, 0)


def test_bucketing_and_pipelining_settings_reach_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auto = build_engine(WorkerSettings(blob_dir=tmp_path, device="cpu"), "cpu", None)
    monkeypatch.setenv("SRSERVE_BUCKET_BATCHES", "on")
    monkeypatch.setenv("SRSERVE_PIPELINE_DEPTH", "2")
    set_by_env = build_engine(WorkerSettings(blob_dir=tmp_path, device="cpu"), "cpu", None)
    try:
        # auto on CPU: neither (both are for CUDA)
        assert auto.padded_batch_size(3, 8) == 3 and auto.config.pipeline_depth is None
        assert set_by_env.padded_batch_size(3, 8) == 4 and set_by_env.config.pipeline_depth == 2
    finally:
        auto.stop()
        set_by_env.stop()
