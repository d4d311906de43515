"""The batching inference engine: one thread owns the device and runs batches of fixed-shape tiles
gathered from every job the worker holds.

Job threads call `InferenceEngine.upscale(descriptor, rgb)`: the image is planned into tiles
(model_store.tiling), the tiles are queued under the key (model, scale, tile shape), and the device
thread forms batches per key with a maximum batch size and a maximum queue delay (Triton's
`max_queue_delay`): it waits for a full batch, but never longer than the delay after the oldest tile
arrived. Results are stitched on the host into the job's output, so images far larger than device
memory work. Decode/encode/metrics run in the job threads, overlapped with device compute.

Out-of-memory is not a failure: the batch is halved (and the key's batch limit lowered), and when a
single tile does not fit the job re-plans with half the tile side, down to `min_tile`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from model_store.registry import SRDescriptor
from model_store.tiling import Stitcher, Tile, TilePlan, extract_tile, plan_tiles

log = logging.getLogger(__name__)


class OutOfMemory(RuntimeError):
    """A single smallest tile did not fit: the job fails with code out_of_memory."""


class JobCanceled(RuntimeError):
    pass


class _TileOOM(RuntimeError):
    pass


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 16
    max_queue_delay_s: float = 0.005


@dataclass
class EngineConfig:
    device: str = "cpu"
    tile_size: int = 128  # LR tile side (before the model's overlap is accounted for)
    min_tile: int = 32
    default_policy: BatchPolicy = field(default_factory=BatchPolicy)
    policies: dict[str, BatchPolicy] = field(default_factory=dict)  # per model name
    half_precision: str = "auto"  # auto: bf16 on CUDA where the card says safe; "off": always fp32
    # Simulated device memory (bytes) for tests and CPU: a batch whose estimated activation memory is
    # larger raises the same out-of-memory path as CUDA. 0 = no simulated limit.
    memory_budget_bytes: int = 0
    # Size each image's tiles to it (`plan_tiles(fit=True)`): least overlap to compute, but tile
    # shapes then differ between images, so tiles of different jobs rarely share a batch. For CPU,
    # where batches are one tile anyway.
    fit_tiles: bool = False

    def policy(self, model: str) -> BatchPolicy:
        return self.policies.get(model, self.default_policy)


@dataclass
class EngineStats:
    """Per-job figures reported in the job's metrics."""

    tiles: int = 0
    max_batch: int = 0
    inference_s: float = 0.0
    oom_backoffs: int = 0
    tile_size: int = 0


class _JobWork:
    def __init__(self, plan: TilePlan, scale: int, cancel: Callable[[], bool]) -> None:
        self.plan = plan
        self.stitcher = Stitcher(plan, scale)
        self.remaining = len(plan.tiles)
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.cancel = cancel
        self.stats = EngineStats(tiles=len(plan.tiles), tile_size=plan.tile_h)
        self.lock = threading.Lock()

    def finish_tile(self, tile: Tile, out: np.ndarray, batch: int, seconds: float) -> None:
        with self.lock:
            self.stitcher.add(tile, out)
            self.remaining -= 1
            self.stats.max_batch = max(self.stats.max_batch, batch)
            self.stats.inference_s += seconds
            if self.remaining == 0:
                self.done.set()

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc
            self.done.set()


@dataclass
class _TileRequest:
    work: _JobWork
    tile: Tile
    pixels: np.ndarray  # (tile_h, tile_w, 3) float32
    enqueued_at: float


_Key = tuple[str, int, int, int]  # model name, scale, tile_h, tile_w


class InferenceEngine:
    def __init__(self, config: EngineConfig, metrics: EngineMetrics | None = None) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.metrics = metrics
        self._pending: dict[_Key, deque[_TileRequest]] = {}
        self._descriptors: dict[_Key, SRDescriptor] = {}
        self._batch_limit: dict[_Key, int] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="srserve-device", daemon=True)
        self._exclusive: deque[tuple[Callable[[], object], _ExclusiveResult]] = deque()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed tile shapes: autotuning pays off
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def start(self) -> InferenceEngine:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    # ---- job-thread side -------------------------------------------------------------------

    def upscale(
        self,
        descriptor: SRDescriptor,
        rgb: np.ndarray,
        *,
        cancel: Callable[[], bool] = lambda: False,
        progress: Callable[[float], None] | None = None,
        tile_size: int | None = None,
    ) -> tuple[np.ndarray, EngineStats]:
        """Upscale one float RGB (H, W, 3) image through batched tiles; blocks the calling job thread."""
        tile = tile_size or self.config.tile_size
        backoffs = 0
        while True:
            overlap = descriptor.receptive_field
            tile = max(tile, 2 * overlap + descriptor.size_multiple)
            plan = plan_tiles(rgb.shape[0], rgb.shape[1], tile, overlap, descriptor.size_multiple,
                              fit=self.config.fit_tiles)
            work = _JobWork(plan, descriptor.scale, cancel)
            self._submit(descriptor, rgb, work)
            self._wait(work, progress)
            if isinstance(work.error, _TileOOM):
                smaller = tile // 2
                if smaller < max(self.config.min_tile, 2 * overlap + 1):
                    raise OutOfMemory(f"a single {tile}x{tile} tile does not fit in device memory")
                log.warning("tile %d does not fit; retrying the job with %d", tile, smaller)
                if self.metrics:
                    self.metrics.oom_backoffs.labels(kind="tile").inc()
                tile, backoffs = smaller, backoffs + 1
                continue
            if work.error is not None:
                raise work.error
            work.stats.oom_backoffs += backoffs
            return work.stitcher.output, work.stats

    def run_exclusive(self, fn: Callable[[], object]) -> object:
        """Run `fn` on the device thread between batches (burst models, whole-image networks)."""
        result = _ExclusiveResult()
        with self._cond:
            self._exclusive.append((fn, result))
            self._cond.notify_all()
        result.done.wait()
        if result.error is not None:
            raise result.error
        return result.value

    def _submit(self, descriptor: SRDescriptor, rgb: np.ndarray, work: _JobWork) -> None:
        plan = work.plan
        key: _Key = (descriptor.name, descriptor.scale, plan.tile_h, plan.tile_w)
        now = time.perf_counter()
        requests = [_TileRequest(work, t, extract_tile(rgb, t, plan), now) for t in plan.tiles]
        with self._cond:
            self._descriptors.setdefault(key, descriptor)
            self._pending.setdefault(key, deque()).extend(requests)
            self._cond.notify_all()

    def _wait(self, work: _JobWork, progress: Callable[[float], None] | None) -> None:
        total = len(work.plan.tiles)
        while True:
            # checked before each wait too: a job canceled while queued drops its tiles at once
            if work.cancel():
                work.fail(JobCanceled("job canceled"))
                break
            if work.done.wait(timeout=0.25):
                break
            if progress:
                progress((total - work.remaining) / total)
        if progress and work.error is None:
            progress(1.0)

    # ---- device-thread side ----------------------------------------------------------------

    def pending_tiles(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._pending.values())

    def _next_batch(self) -> tuple[_Key, list[_TileRequest]] | None:
        """Under the lock: pick the key whose oldest tile waited longest; wait for a full batch or
        its queue delay, whichever comes first."""
        while True:
            if self._stop:
                return None
            if self._exclusive:
                return None
            live = {k: q for k, q in self._pending.items() if q}
            if not live:
                self._cond.wait(timeout=0.5)
                continue
            key = min(live, key=lambda k: live[k][0].enqueued_at)
            queue = live[key]
            policy = self.config.policy(key[0])
            limit = min(policy.max_batch_size, self._batch_limit.get(key, policy.max_batch_size))
            waited = time.perf_counter() - queue[0].enqueued_at
            if len(queue) >= limit or waited >= policy.max_queue_delay_s:
                batch = [queue.popleft() for _ in range(min(limit, len(queue)))]
                return key, batch
            self._cond.wait(timeout=policy.max_queue_delay_s - waited)

    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cond:
                picked = self._next_batch()
                exclusive = self._exclusive.popleft() if picked is None and self._exclusive else None
                if picked is None and exclusive is None and self._stop:
                    return
            if exclusive is not None:
                fn, result = exclusive
                try:
                    result.value = fn()
                except BaseException as exc:  # handed to the job thread that asked
                    result.error = exc
                result.done.set()
                continue
            if picked is None:
                continue
            key, batch = picked
            batch = [r for r in batch if r.work.error is None]  # canceled or failed jobs drop out
            if batch:
                self._run_batch(key, batch)

    def _run_batch(self, key: _Key, batch: list[_TileRequest]) -> None:
        descriptor = self._descriptors[key]
        try:
            t0 = time.perf_counter()
            out = self._forward(descriptor, batch)
            seconds = time.perf_counter() - t0
        except _TileOOM:
            if self.metrics:
                self.metrics.oom_backoffs.labels(kind="batch").inc()
            if len(batch) == 1:
                batch[0].work.fail(_TileOOM())
                return
            half = len(batch) // 2
            self._batch_limit[key] = max(1, half)
            log.warning("out of memory at batch %d for %s; limiting to %d", len(batch), key[0], half)
            with self._cond:  # put them back at the front, in order
                self._pending[key].extendleft(reversed(batch))
            return
        except Exception as exc:
            log.exception("batch of %d tiles for %s failed", len(batch), key[0])
            for r in batch:
                r.work.fail(exc)
            return
        if self.metrics:
            self.metrics.observe_batch(descriptor.name, len(batch), seconds, out.shape, batch)
        per_tile = seconds / len(batch)
        for r, tile_out in zip(batch, out, strict=True):
            r.work.finish_tile(r.tile, tile_out, len(batch), per_tile)

    def _forward(self, descriptor: SRDescriptor, batch: list[_TileRequest]) -> np.ndarray:
        n = len(batch)
        th, tw = batch[0].pixels.shape[:2]
        budget = self.config.memory_budget_bytes
        if budget and _activation_bytes(descriptor, n, th, tw) > budget:
            raise _TileOOM()
        host = torch.from_numpy(np.stack([r.pixels for r in batch]))  # (N, h, w, 3)
        if self.device.type == "cuda":
            host = host.pin_memory()
        x = host.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        dtype = None
        if self.device.type == "cuda" and self.config.half_precision == "auto" and descriptor.supports_half:
            dtype = torch.bfloat16
        try:
            with torch.inference_mode():
                y = descriptor(x, dtype=dtype)
                y = y.permute(0, 2, 3, 1).contiguous()
                out = y.to("cpu", non_blocking=False).numpy()
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise _TileOOM() from exc
        return out


def _activation_bytes(descriptor: SRDescriptor, batch: int, h: int, w: int) -> int:
    # A rough upper bound used only for the simulated budget: float32 output plus 64-channel features.
    s = descriptor.scale
    return batch * h * w * 4 * (3 * s * s + 64 * 2)


@dataclass
class _ExclusiveResult:
    done: threading.Event = field(default_factory=threading.Event)
    value: object = None
    error: BaseException | None = None


class EngineMetrics:
    """Prometheus series of the engine (registered on the worker's own registry)."""

    def __init__(self, registry: object | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = registry or REGISTRY
        self.batch_size = Histogram(
            "srserve_batch_size",
            "Tiles per device batch",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=reg,
        )
        self.queue_delay = Histogram(
            "srserve_batch_queue_delay_seconds",
            "Time the oldest tile of a batch waited",
            ["model"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=reg,
        )
        self.inference = Histogram(
            "srserve_inference_seconds",
            "Device time per batch",
            ["model"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=reg,
        )
        self.tiles = Counter("srserve_tiles_total", "Tiles processed", ["model"], registry=reg)
        self.output_pixels = Counter(
            "srserve_output_pixels_total",
            "Output pixels produced (rate() gives px/s)",
            ["model"],
            registry=reg,
        )
        self.oom_backoffs = Counter(
            "srserve_oom_backoffs_total",
            "Out-of-memory back-offs (batch halved or tile halved)",
            ["kind"],
            registry=reg,
        )
        self.gpu_memory = Gauge(
            "srserve_gpu_memory_bytes", "Device memory allocated by PyTorch", ["kind"], registry=reg
        )

    def observe_batch(
        self, model: str, n: int, seconds: float, out_shape: tuple[int, ...], batch: list[_TileRequest]
    ) -> None:
        self.batch_size.labels(model).observe(n)
        self.inference.labels(model).observe(seconds)
        self.tiles.labels(model).inc(n)
        self.output_pixels.labels(model).inc(int(np.prod(out_shape[:3])))
        self.queue_delay.labels(model).observe(time.perf_counter() - seconds - batch[0].enqueued_at)
        if torch.cuda.is_available():
            self.gpu_memory.labels("allocated").set(torch.cuda.memory_allocated())
            self.gpu_memory.labels("reserved").set(torch.cuda.memory_reserved())
