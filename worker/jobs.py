"""RQ entry points. `run_upscale(payload)` runs one single-image job through the pipeline stages and
returns a JSON dict (`srserve.jobspec.JobOutcome`); RQ stores it as the job's result."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis
import torch
from pydantic import ValidationError
from rq import get_current_job
from rq.job import Job

from model_store.card import Catalog
from srserve import imaging, jobspec
from srserve.blobstore import BlobNotFoundError, BlobStore, make_blob_store
from srserve.logging_setup import current_job_id
from srserve.schemas import FrameReport, JobMetrics, Timings
from worker import durable, pipeline
from worker.burst import BurstDescriptorCache
from worker.engine import (
    BatchPolicy,
    EngineConfig,
    EngineMetrics,
    EngineStats,
     InferenceEngine,
    JobCanceled,
    OutOfMemory,
)
from worker.metrics import WorkerMetrics, get_engine_metrics, get_worker_metrics
from worker.settings import WorkerSettings, get_settings

log = logging.getLogger(__name__)

# Job ids whose stop was requested through RQ's stop-job command (set by the worker's pubsub thread).
_stop_requested: set[str] = set()
_stop_lock = threading.Lock()


def request_stop(job_id: str) -> None:
    with _stop_lock:
        _stop_requested.add(job_id)


def clear_stop(job_id: str) -> None:
    with _stop_lock:
        _stop_requested.discard(job_id)


def stop_requested(job_id: str) -> bool:
    with _stop_lock:
        return job_id in _stop_requested


@dataclass
class WorkerContext:
    """What a worker process loads once: settings, blob store, catalog, device, models, metrics."""

    settings: WorkerSettings
    store: BlobStore
    catalog: Catalog
    device: str
    descriptors: pipeline.DescriptorCache
    metrics: WorkerMetrics
    engine: InferenceEngine
    _burst: BurstDescriptorCache | None = None

    @property
    def burst_descriptors(self) -> BurstDescriptorCache:
        if self._burst is None:
            self._burst = BurstDescriptorCache(self.catalog, self.device)
        return self._burst


def default_torch_threads() -> int:
    """Half the cores, 1 to 4: the device thread shares the machine with the job threads (decode,
    tiling, stitching, encode) and often the API and Redis. More intra-op threads than free cores spin
    and oversubscribe: on the 2-core CI VM one thread beat two for FSRCNN x4 at 256² and 512², naive
    and through the engine alike (about 1.5x, bench/results/README.md)."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


class EngineDefaults(NamedTuple):
    tile_size: int
    max_batch_size: int
    fit_tiles: bool
    fit_step: int
    max_batch_pixels: int


def engine_defaults(
    device: str, max_batch_size: int = 0, tile_size: int = 0, max_batch_pixels: int = -1
) -> EngineDefaults:
    """Tile side, batch limits and tile fitting for `device` (0, or -1 for the pixel cap, meaning auto).

    CPU: one tile per batch. A CPU convolution is as efficient on one tile as on many, and a batch
    multiplies the activations: past glibc's 32 MB mmap threshold every layer's output is a fresh
    mmap, page-faulted and unmapped again (FSRCNN x4, 16 tiles of 128², one thread: 819 ms as one
    batch, 267 ms one tile at a time, most of the difference in system time). With one tile per batch
    no shape has to be shared, so tiles are sized to the image, up to 256² (a 256² tile's activations,
    56-64 channels, stay under the 32 MB that glibc serves from its heap).

    CUDA: tiles up to 768², fitted to the image on a 32-px grid. Fixed 256² tiles computed 2.25x the
    pixels of a 512² image (nine tiles, each overlapping its neighbours by the receptive field) and
    1.3-2.1x those of a 1080p one; fitted, a 512² image is one tile and 1080p 1.1-1.3x (FSRCNN, EDSR),
    while the grid keeps the shapes few, so similar-size jobs still batch. Batches hold up to 64 tiles
    and 16 x 384² LR pixels (the earlier fixed default's volume): 64 tiles of 128² (what the pure forward
    of FSRCNN x4 ran best at on an H200), 4 of 768²."""
    cuda = device.startswith("cuda")
    if cuda:
        pixels = 16 * 384 * 384 if max_batch_pixels < 0 else max_batch_pixels
        return EngineDefaults(tile_size or 768, max_batch_size or 64, True, 32, pixels)
    batch = max_batch_size or 1
    return EngineDefaults(tile_size or 256, batch, batch == 1, 1, max(0, max_batch_pixels))


def engine_config(settings: WorkerSettings, device: str) -> EngineConfig:
    """The engine a worker with `settings` runs on `device` (and what `srserve bench models` measures)."""
    tile, batch, fit_tiles, fit_step, batch_pixels = engine_defaults(
        device, settings.max_batch_size, settings.tile_size, settings.max_batch_pixels
    )
    default = BatchPolicy(batch, settings.max_queue_delay_ms / 1000.0)
    policies = {
        name: BatchPolicy(int(p.get("max_batch_size", default.max_batch_size)),
                          float(p.get("max_queue_delay_s", default.max_queue_delay_s)))
        for name, p in settings.batch_policies.items()
    }
    return EngineConfig(
        device=device,
        tile_size=tile,
        min_tile=settings.min_tile,
        default_policy=default,
        policies=policies,
        half_precision=settings.half_precision,
        memory_budget_bytes=settings.memory_budget_bytes,
        fit_tiles=fit_tiles,
        fit_step=fit_step,
        max_batch_pixels=batch_pixels,
        bucket_batches={"auto": None, "on": True, "off": False}[settings.bucket_batches],
        pipeline_depth=None if settings.pipeline_depth < 0 else settings.pipeline_depth,
    )


def set_torch_threads(settings: WorkerSettings) -> None:
    """The process's intra-op threads: `SRSERVE_TORCH_THREADS`, else `default_torch_threads()`."""
    torch.set_num_threads(settings.torch_threads or default_torch_threads())


def build_engine(settings: WorkerSettings, device: str, metrics: EngineMetrics | None) -> InferenceEngine:
    """The device thread every job of this process sends its tiles to."""
    set_torch_threads(settings)
    return InferenceEngine(engine_config(settings, device), metrics).start()


@functools.cache
def get_context() -> WorkerContext:
    settings = get_settings()
    catalog = Catalog.load(settings.models_dir)
    device = pipeline.resolve_device(settings.device)
    return WorkerContext(
        settings=settings,
        store=make_blob_store(settings),
        catalog=catalog,
        device=device,
        descriptors=pipeline.DescriptorCache(catalog, device),
        metrics=get_worker_metrics(),
        engine=build_engine(settings, device, get_engine_metrics()),
    )


class JobState:
    """Progress reporting and cooperative cancellation for the RQ job running this payload.

    Redis sees at most one round trip per `sync_interval_s` from a job (progress written and the
    cancel key read in one pipeline), plus the first one at the job's start: a tiny job used to spend
    a dozen round trips on six progress writes and six cancel checks, a third of its worker time.
    A cancel of a running job still lands at once: the API also sends RQ's stop command, which sets
    the in-process flag checked on every call; the cancel key is the fallback when that is missed.
    A succeeded job reads as progress 1.0 whatever was last written.
    """

    sync_interval_s = 0.25

    def __init__(self, job: Job | None, job_id: str) -> None:
        self.job = job
        self.job_id = job_id
        self._last_sync = -math.inf
        self._meta_dirty = False
        self._cancel_seen = False

    def progress(self, value: float, stage: str) -> None:
        if self.job is None:
            return
        self.job.meta["progress"] = round(min(max(value, 0.0), 1.0), 3)
        self.job.meta["stage"] = stage
        self._meta_dirty = True
        self._sync()

    def canceled(self) -> bool:
        if stop_requested(self.job_id):
            return True
        if self.job is None:
            return False
        return self._sync()

    def check(self) -> None:
        if self.canceled():
            raise pipeline.JobCanceledError("the job was canceled")

    def _sync(self) -> bool:
        """Write pending progress and read the cancel key, if the last round trip is old enough."""
        assert self.job is not None
        now = time.monotonic()
        if self._cancel_seen or now - self._last_sync < self.sync_interval_s:
            return self._cancel_seen
        self._last_sync = now
        try:
            pipe = self.job.connection.pipeline(transaction=False)
            if self._meta_dirty:
                pipe.hset(self.job.key, "meta", self.job.serializer.dumps(self.job.meta))
            pipe.exists(jobspec.cancel_key(self.job_id))
            self._cancel_seen = bool(pipe.execute()[-1])
            self._meta_dirty = False
        except redis.RedisError:  # progress is advisory and the cancel key a fallback: the job goes on
            log.warning("could not sync job progress / cancel state", exc_info=True)
        return self._cancel_seen


def run_upscale(payload: dict[str, Any]) -> dict[str, Any]:
    """Decode → infer → encode → measure → store; returns the JobOutcome as JSON."""
    received = time.time()
    try:
        spec = jobspec.UpscalePayload.model_validate(payload)
    except ValidationError as exc:
        raise pipeline.InvalidPayloadError(f"malformed job payload: {exc.error_count()} errors") from exc
    token = current_job_id.set(spec.job_id)
    try:
        outcome = execute_upscale(spec, get_context(), JobState(get_current_job(), spec.job_id), received)
        return outcome.model_dump(mode="json")
    finally:
        clear_stop(spec.job_id)
        current_job_id.reset(token)


@contextmanager
def _timed(timings: dict[str, float], name: str, ctx: WorkerContext) -> Iterator[None]:
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - t, 4)
        ctx.metrics.stage.labels(name).observe(timings[name])


def execute_upscale(
    spec: jobspec.UpscalePayload,
    ctx: WorkerContext,
    state: JobState | None = None,
    received: float | None = None,
) -> jobspec.JobOutcome:
    """The job body, given its context explicitly (tests and the batching engine build their own)."""
    state = state or JobState(None, spec.job_id)
    received = time.time() if received is None else received
    settings = ctx.settings
    timings: dict[str, float] = {}
    notes: list[str] = []
    state.check()
    committed = durable.committed_outcome(ctx.store, spec.job_id)
    if committed is not None:  # an earlier attempt finished but could not report it: same answer
        log.info("job %s was completed by an earlier attempt; returning its stored outcome", spec.job_id)
        return committed
    state.progress(0.02, "decode")

    with _timed(timings, "decode", ctx):
        frames = [
            pipeline.decode(_get_blob(ctx.store, key, f"frame {i}"), settings.max_input_pixels, f"frame {i}")
            for i, key in enumerate(spec.input_keys)
        ]
        # a single image is a burst of one; a burst's output is aligned to its reference frame
        image = frames[spec.reference_frame] if spec.kind == "burst" else frames[0]
        reference = None
        if spec.reference_key:
            ref_bytes = _get_blob(ctx.store, spec.reference_key, "reference image")
            reference = imaging.to_uint8(
                pipeline.decode(ref_bytes, settings.max_output_pixels, "reference").rgb
            )
    notes.extend(image.notes)
    state.check()
    state.progress(0.1, "infer")

    try:
        card = ctx.catalog.get(spec.model)
    except KeyError as exc:
        raise pipeline.ModelUnavailableError(f"model {spec.model!r} is not installed on this worker") from exc
    frame_reports: list[FrameReport] | None = None
    with _timed(timings, "inference", ctx):
        if spec.kind == "burst":
            out_rgb, frame_reports = _infer_burst(ctx, card, spec, [f.rgb for f in frames])
            engine_stats = EngineStats(tiles=1, max_batch=1)
            if any(f.alpha is not None for f in frames):
                notes.append("burst: alpha channels ignored")
        else:
            descriptor = _load(ctx, card, spec.scale)
            eight_bit = not imaging.keeps_16_bits(spec.format, image.bit_depth)
            out_rgb, engine_stats = _infer(ctx, descriptor, image.rgb, state, eight_bit)
        out_alpha = None
        if image.alpha is not None and spec.kind != "burst":
            out_alpha = pipeline.upscale_alpha(image.alpha, spec.scale)
            notes.append("alpha channel upscaled with bicubic")
    ctx.metrics.inference.labels(spec.model).observe(timings["inference"])
    state.check()
    state.progress(0.8, "encode")

    with _timed(timings, "encode", ctx):
        encoded, encode_notes = pipeline.encode(image, out_rgb, out_alpha, spec.format)
    notes.extend(encode_notes)
    state.check()
    state.progress(0.9, "metrics")

    with _timed(timings, "metrics", ctx):
        measured = pipeline.measure(
            imaging.to_uint8(out_rgb),
            imaging.to_uint8(image.rgb),
            spec.scale,
            reference,
            max_output_pixels=settings.metrics_max_output_pixels,
        )
    notes.extend(measured.notes)
    state.check()
    state.progress(0.95, "store")

    key = jobspec.result_key(spec.job_id, spec.format)
    try:
        ctx.store.put(key, encoded, imaging.content_type(spec.format))
    except OSError as exc:
        raise pipeline.StorageFailedError(f"could not store the result: {exc}") from exc

    out_h, out_w = out_rgb.shape[:2]
    finished = time.time()
    metrics = JobMetrics(
        psnr_y=measured.psnr_y,
        ssim_y=measured.ssim_y,
        bicubic_psnr_y=measured.bicubic_psnr_y,
        bicubic_ssim_y=measured.bicubic_ssim_y,
        lr_consistency_psnr=measured.lr_consistency_psnr,
        timings=Timings(
            queue_wait_s=round(max(0.0, received - spec.submitted_at), 4),
            decode_s=timings["decode"],
            inference_s=timings["inference"],
            encode_s=timings["encode"],
            metrics_s=timings["metrics"],
            total_s=round(max(0.0, finished - spec.submitted_at), 4),
        ),
        device=ctx.device,
        model=spec.model,
        precision=engine_stats.precision,
        weights_sha256=card.weights_sha256,
        batch_size=engine_stats.max_batch,
        tiles=engine_stats.tiles,
        frames=frame_reports,
        notes=notes,
    )
    ctx.metrics.processed.labels(spec.model).inc()
    ctx.metrics.duration.labels(spec.model).observe(max(0.0, finished - spec.submitted_at))
    if ctx.device.startswith("cuda"):
        with contextlib.suppress(Exception):  # NVML (nvidia-ml-py) missing: the gauge stays unset
            ctx.metrics.gpu_utilization.labels(ctx.device).set(torch.cuda.utilization() / 100.0)
    state.progress(1.0, "done")
    log.info(
        "job done: %s x%d %dx%d -> %dx%d in %.3fs",
        spec.model,
        spec.scale,
        image.width,
        image.height,
        out_w,
        out_h,
        finished - received,
    )
    outcome = jobspec.JobOutcome(
        result=jobspec.StoredResult(
            key=key,
            width=out_w,
            height=out_h,
            format=spec.format,
            bytes=len(encoded),
            content_type=imaging.content_type(spec.format),
        ),
        metrics=metrics,
    )
    try:  # committed before the inputs go: a re-run (success not recorded) returns this
        durable.commit(ctx.store, spec.job_id, outcome)
    except OSError as exc:
        raise pipeline.StorageFailedError(f"could not store the job outcome: {exc}") from exc
    # inputs are not needed once the result exists; whatever is left goes with the job's expiry
    for input_key in [*spec.input_keys, *([spec.reference_key] if spec.reference_key else [])]:
        _delete_quietly(ctx.store, input_key)
    return outcome


def _infer(
    ctx: WorkerContext, descriptor: Any, rgb: Any, state: JobState, eight_bit: bool
) -> tuple[Any, EngineStats]:
    """Tiles through the shared batching engine; progress 0.1 -> 0.8 follows tiles done."""
    try:
        return ctx.engine.upscale(
            descriptor,
            rgb,
            cancel=state.canceled,
            progress=lambda done: state.progress(0.1 + 0.7 * done, "infer"),
            eight_bit=eight_bit,
        )
    except JobCanceled as exc:
        raise pipeline.JobCanceledError("the job was canceled") from exc
    except OutOfMemory as exc:
        raise pipeline.OutOfMemoryError(str(exc)) from exc
    except Exception as exc:  # a broken batch: transient by default (RQ retries)
        raise pipeline.InferenceFailedError(f"{descriptor.name} failed: {exc}") from exc


def _infer_burst(
    ctx: WorkerContext, card: Any, spec: jobspec.UpscalePayload, frames: list[Any]
) -> tuple[Any, list[FrameReport]]:
    """Burst fusion runs whole on the device thread, between tile batches."""
    from worker.burst import run_burst

    if card.kind != "burst":
        raise pipeline.InvalidPayloadError(f"model {card.name!r} is not a burst model")
    try:
        out, reports = ctx.engine.run_exclusive(
            lambda: run_burst(card, frames, spec.scale, spec.reference_frame, cache=ctx.burst_descriptors)
        )  # type: ignore[misc]
    except pipeline.JobError:
        raise
    except Exception as exc:
        raise pipeline.InferenceFailedError(f"{card.name} failed: {exc}") from exc
    fields = set(FrameReport.model_fields)
    return out, [FrameReport(**{k: v for k, v in r.items() if k in fields}) for r in reports]


def _load(ctx: WorkerContext, card: Any, scale: int) -> Any:
    try:
        return ctx.descriptors.get(card, scale)
    except Exception as exc:  # missing weights, hash mismatch, unknown architecture
        raise pipeline.ModelUnavailableError(
            f"model {card.name!r} x{scale} could not be loaded: {exc}"
        ) from exc


def _get_blob(store: BlobStore, key: str, what: str) -> bytes:
    try:
        return store.get(key)
    except BlobNotFoundError as exc:
        raise pipeline.InputMissingError(f"the {what} is no longer stored (expired or deleted)") from exc
    except OSError as exc:
        raise pipeline.StorageFailedError(f"could not read the {what}: {exc}") from exc


def _delete_quietly(store: BlobStore, key: str) -> None:
    try:
        store.delete_prefix(key)
    except OSError:
        log.warning("could not delete %s", key, exc_info=True)


def count_failure(model: str, code: str) -> None:
    get_worker_metrics().failed.labels(model, code).inc()
