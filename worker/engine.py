"""The batching inference engine: one thread owns the device and runs batches of fixed-shape tiles
gathered from every job the worker holds.

Job threads call `InferenceEngine.upscale(descriptor, rgb)`: the image is planned into tiles
(model_store.tiling), the tiles are queued under the key (model, scale, tile shape), and the device
thread forms batches per key with a maximum batch size and a maximum queue delay (Triton's
`max_queue_delay`): it waits for a full batch, but never longer than the delay after the oldest tile
arrived. Results are stitched on the host into the job's output, so images far larger than device
memory work. Decode/encode/metrics run in the job threads, overlapped with device compute.

On CUDA three more things keep the device busy (first H200 run, bench/results/README.md): batch sizes
are padded to powers of two and each is warmed up once per model, because cuDNN autotunes every new
input shape; batches go through reused page-locked staging buffers, never fresh pageable tensors; and
up to `pipeline_depth` batches are in flight, each copied out and stitched on a completion thread
while the device thread launches the next.

Out-of-memory is not a failure: the batch is halved (and the key's batch limit lowered), and when a
single tile does not fit the job re-plans with half the tile side, down to `min_tile`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import NamedTuple

import numpy as np
import torch

from model_store.precision import cpu_serving_dtype
from model_store.registry import SRDescriptor
from model_store.tiling import Stitcher, Tile, TilePlan, extract_tile, plan_tiles

log = logging.getLogger(__name__)


class OutOfMemory(RuntimeError):
    """A single smallest tile did not fit: the job fails with code out_of_memory."""


class JobCanceled(RuntimeError):
    pass


def _rounded_hwc_uint8(clamped: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 1] -> (N, H, W, 3) uint8, rounded as `srserve.imaging.to_uint8` rounds
    (half to even), in place on `clamped`. On CPU numpy casts float to uint8 ~2.5x faster than torch, and a
    planar (NCHW) output is interleaved by stacking its three uint8 planes, ~2x faster than a permuted copy:
    per output megapixel 2.45 -> 1.39 ms (~4% of a 256² FSRCNN x4 job on one thread)."""
    rounded = clamped.mul_(255.0).round_()
    hwc = rounded.permute(0, 2, 3, 1)
    if rounded.device.type != "cpu":
        return hwc.to(torch.uint8)
    if hwc.is_contiguous():  # channels_last outputs (the RGB networks): a cast, no interleave
        return torch.from_numpy(hwc.numpy().astype(np.uint8))
    planes = torch.from_numpy(rounded.contiguous().numpy().astype(np.uint8))
    return torch.stack(planes.unbind(1), dim=-1)


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
    # auto: bf16 where the card says it is safe on this device (on a CPU: native bf16, and measured
    # faster for the network); "off": always fp32
    half_precision: str = "auto"
    # Simulated device memory (bytes) for tests and CPU: a batch whose estimated activation memory is
    # larger raises the same out-of-memory path as CUDA. 0 = no simulated limit.
    memory_budget_bytes: int = 0
    # Size each image's tiles to it (`plan_tiles(fit=True)`): least overlap to compute. Tile shapes
    # then follow the image; `fit_step` rounds the side of every axis that needs several tiles up to a
    # multiple of it, so jobs of similar sizes still share shapes and batches (CUDA: 32; CPU, one
    # tile per batch: 1).
    fit_tiles: bool = False
    fit_step: int = 1
    # A batch also stops at this many LR pixels (0: no limit). With tiles sized to each image a tile
    # count alone would make batches of 128² tiles tiny and of 768² ones huge; CUDA: 16 tiles of 384²
    # (= 64 of 128², 4 of 768²).
    max_batch_pixels: int = 0
    # Pad every batch up to a power of two (at most the batch limit) by repeating its last tile, so a
    # tile shape only ever runs at a handful of batch sizes: cuDNN autotunes each new input shape
    # (tens of ms), which with free batch sizes 1..N never stops. None: on CUDA only.
    bucket_batches: bool | None = None
    # Batches in flight between launch and stitching, each in its own staging slot: while one batch
    # computes, earlier ones copy out and are stitched into their jobs on as many completion threads,
    # so the device never waits for the host. 0: stitch inline on the device
    # thread (nothing to overlap on CPU). None: 3 on CUDA, 0 elsewhere.
    pipeline_depth: int | None = None
    # Copy batches in and out through the reused per-slot host buffers (page-locked on CUDA). None: on
    # CUDA only; on CPU the tests switch it on to exercise the slot handling that CUDA relies on.
    staging: bool | None = None

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
    precision: str = "fp32"  # or bf16: what the network computed in (`serving_dtype`)


class _JobWork:
    def __init__(self, plan: TilePlan, scale: int, cancel: Callable[[], bool], dtype: type = np.float32) -> None:
        self.plan = plan
        self.stitcher = Stitcher(plan, scale, dtype=dtype)
        self.remaining = len(plan.tiles)
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.cancel = cancel
        self.stats = EngineStats(tiles=len(plan.tiles), tile_size=plan.tile_h)
        self.lock = threading.Lock()

    def finish_tile(self, tile: Tile, out: np.ndarray, batch: int, seconds: float, *, owned: bool = False) -> None:
        with self.lock:
            self.stitcher.add(tile, out, owned=owned)
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


class _Key(NamedTuple):
    """What the tiles of one batch share."""

    model: str
    scale: int
    tile_h: int
    tile_w: int
    eight_bit: bool  # outputs rounded to uint8 on the device

    @property
    def shape(self) -> tuple[str, int, int, int]:
        """The model at this tile shape: what cuDNN autotunes (the output's type does not matter)."""
        return self.model, self.scale, self.tile_h, self.tile_w


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
        self._bucket = config.bucket_batches if config.bucket_batches is not None else self.device.type == "cuda"
        # CUDA: page-locked host buffers reused by every batch (grown to the largest one seen). A fresh
        # pageable array per batch costs a page fault per 4 KiB on every copy out (at x4 a batch of 32
        # 256² tiles is 400 MB of float32), and only page-locked memory copies at full bus speed.
        self._staging: dict[tuple[str, int, torch.dtype], torch.Tensor] = {}
        self._use_staging = config.staging if config.staging is not None else self.device.type == "cuda"
        self._warmed: set[tuple[str, int, int, int]] = set()  # `_Key.shape`s
        self._cpu_dtype: dict[tuple[str, int], torch.dtype | None] = {}  # (model, scale): measured once
        depth = config.pipeline_depth if config.pipeline_depth is not None else 3 * (self.device.type == "cuda")
        self._free_slots: SimpleQueue[int] = SimpleQueue()
        for slot in range(max(1, depth)):
            self._free_slots.put(slot)
        self._completions = ThreadPoolExecutor(depth, thread_name_prefix="srserve-stitch") if depth else None
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
        if self._completions is not None:
            self._completions.shutdown(wait=True)  # batches already launched still reach their jobs

    # ---- job-thread side -------------------------------------------------------------------

    def upscale(
        self,
        descriptor: SRDescriptor,
        rgb: np.ndarray,
        *,
        cancel: Callable[[], bool] = lambda: False,
        progress: Callable[[float], None] | None = None,
        tile_size: int | None = None,
        eight_bit: bool = False,
    ) -> tuple[np.ndarray, EngineStats]:
        """Upscale one float RGB (H, W, 3) image through batched tiles; blocks the calling job thread.
        The output is float32 in [0, 1], or with `eight_bit` uint8, rounded on the device exactly as
        `srserve.imaging.to_uint8` rounds: what an 8-bit result is encoded and measured from anyway, in a
        quarter of the bytes to copy off the device, stitch and keep."""
        tile = tile_size or self.config.tile_size
        backoffs = 0
        while True:
            overlap = descriptor.receptive_field
            tile = self.tile_side(descriptor, tile)
            plan = plan_tiles(rgb.shape[0], rgb.shape[1], tile, overlap, descriptor.size_multiple,
                              fit=self.config.fit_tiles, fit_step=self.config.fit_step)
            work = _JobWork(plan, descriptor.scale, cancel, np.uint8 if eight_bit else np.float32)
            self._submit(descriptor, rgb, work, eight_bit)
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
            if self.serving_dtype(descriptor) == torch.bfloat16:  # decided by the job's first batch, cached
                work.stats.precision = "bf16"
            return work.stitcher.output, work.stats

    @staticmethod
    def tile_side(descriptor: SRDescriptor, tile: int) -> int:
        """The LR tile side a model really runs at: room for its overlap, a multiple of its size step."""
        side = max(tile, 2 * descriptor.receptive_field + descriptor.size_multiple)
        return -(-side // descriptor.size_multiple) * descriptor.size_multiple

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

    def _submit(self, descriptor: SRDescriptor, rgb: np.ndarray, work: _JobWork, eight_bit: bool) -> None:
        plan = work.plan
        key = _Key(descriptor.name, descriptor.scale, plan.tile_h, plan.tile_w, eight_bit)
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

    def _limit(self, key: _Key) -> int:
        """Tiles per batch for a key: the model's policy and the pixel cap, lowered after an out-of-memory."""
        policy_max = self.config.policy(key.model).max_batch_size
        if self.config.max_batch_pixels:
            policy_max = min(policy_max, max(1, self.config.max_batch_pixels // (key.tile_h * key.tile_w)))
        return min(policy_max, self._batch_limit.get(key, policy_max))

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
            policy = self.config.policy(key.model)
            limit = self._limit(key)
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
        slot = self._free_slots.get()  # blocks while `pipeline_depth` batches are still in flight
        try:
            t0 = time.perf_counter()
            out, ready = self._forward(descriptor, key, batch, slot)
        except _TileOOM:
            self._free_slots.put(slot)
            if self.metrics:
                self.metrics.oom_backoffs.labels(kind="batch").inc()
            if len(batch) == 1:
                batch[0].work.fail(_TileOOM())
                return
            half = len(batch) // 2
            self._batch_limit[key] = max(1, half)
            log.warning("out of memory at batch %d for %s; limiting to %d", len(batch), key.model, half)
            with self._cond:  # put them back at the front, in order
                self._pending[key].extendleft(reversed(batch))
            return
        except Exception as exc:
            self._free_slots.put(slot)
            log.exception("batch of %d tiles for %s failed", len(batch), key.model)
            for r in batch:
                r.work.fail(exc)
            return
        if self._completions is not None:
            self._completions.submit(self._complete, descriptor, batch, out, ready, slot, t0)
        else:
            self._complete(descriptor, batch, out, ready, slot, t0)

    def _complete(
        self,
        descriptor: SRDescriptor,
        batch: list[_TileRequest],
        out: np.ndarray,
        ready: torch.cuda.Event | None,
        slot: int,
        t0: float,
    ) -> None:
        """Wait for the batch's copy to the host, stitch its tiles into their jobs, free its staging slot."""
        try:
            if ready is not None:
                ready.synchronize()
            seconds = time.perf_counter() - t0
            if self.metrics:
                self.metrics.observe_batch(descriptor.name, len(batch), seconds, out.shape, batch)
            per_tile = seconds / len(batch)
            # a batch of one in a fresh array (no staging slot, which the next batch overwrites) is handed
            # to its job: a one-tile job keeps it as its output instead of copying it
            owned = len(batch) == 1 and len(out) == 1 and not self._use_staging
            for r, tile_out in zip(batch, out, strict=True):
                r.work.finish_tile(r.tile, tile_out, len(batch), per_tile, owned=owned)
        except Exception as exc:  # a failed copy fails its jobs, never the engine
            log.exception("finishing a batch of %d tiles for %s failed", len(batch), descriptor.name)
            for r in batch:
                r.work.fail(exc)
        finally:
            self._free_slots.put(slot)

    def padded_batch_size(self, n: int, limit: int) -> int:
        """The batch size `n` tiles run at: the next power of two, capped at the batch limit."""
        if not self._bucket or n <= 1:
            return n
        return max(n, min(1 << (n - 1).bit_length(), limit))

    def _host_buffer(self, role: str, slot: int, shape: tuple[int, ...], dtype: torch.dtype = torch.float32
                     ) -> torch.Tensor:
        numel = math.prod(shape)
        buf = self._staging.get((role, slot, dtype))
        if buf is None or buf.numel() < numel:
            self._staging.pop((role, slot, dtype), None)  # free the old one first: page-locked memory is scarce
            buf = torch.empty(numel, dtype=dtype, pin_memory=self.device.type == "cuda")
            self._staging[(role, slot, dtype)] = buf
        return buf[:numel].view(shape)

    def _forward(
        self, descriptor: SRDescriptor, key: _Key, batch: list[_TileRequest], slot: int
    ) -> tuple[np.ndarray, torch.cuda.Event | None]:
        """Launch the batch; returns its (n, h*s, w*s, 3) float32 (for an 8-bit key, uint8) outputs and, on
        CUDA, the event after which they are on the host. With staging the array is a view of the slot's
        buffer: valid until the slot is handed out again, so it is stitched before the slot is freed."""
        n = len(batch)
        th, tw = key.tile_h, key.tile_w
        limit = self._limit(key)
        padded = self.padded_batch_size(n, limit)
        budget = self.config.memory_budget_bytes
        if budget and _activation_bytes(descriptor, padded, th, tw) > budget:
            raise _TileOOM()
        cuda = self.device.type == "cuda"
        dtype = self.serving_dtype(descriptor, th, tw)
        if self._bucket and key.shape not in self._warmed and self._recurring_shape(descriptor, th, tw):
            self._warmed.add(key.shape)
            self._warm_up(descriptor, th, tw, limit, dtype)
        if self.metrics and padded > n:
            self.metrics.padding_tiles.labels(descriptor.name).inc(padded - n)
        tiles = [r.pixels for r in batch] + [batch[-1].pixels] * (padded - n)
        if self._use_staging:
            host = self._host_buffer("in", slot, (padded, th, tw, 3))
            np.stack(tiles, out=host.numpy())
        else:
            host = torch.from_numpy(np.stack(tiles))  # (N, h, w, 3)
        x = host.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        try:
            with torch.inference_mode():
                y = descriptor(x, dtype=dtype)  # clamped to [0, 1], a fresh tensor
                # 8-bit keys are rounded here, on the device, before any copy
                y = _rounded_hwc_uint8(y) if key.eight_bit else y.permute(0, 2, 3, 1)
                ready = None
                if self._use_staging:
                    out = self._host_buffer("out", slot, tuple(y.shape), y.dtype)
                    out.copy_(y, non_blocking=cuda)
                    if cuda:
                        ready = torch.cuda.Event()
                        ready.record(torch.cuda.current_stream(self.device))
                else:
                    out = y.contiguous().cpu()  # a no-op on CPU; a plain synchronous copy on CUDA
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.synchronize(self.device)  # no copy may still read the staging buffer on retry
            torch.cuda.empty_cache()
            raise _TileOOM() from exc
        return out.numpy()[:n], ready

    def serving_dtype(self, descriptor: SRDescriptor, th: int = 64, tw: int = 64) -> torch.dtype | None:
        """bf16 where the card says it is safe on this device (`descriptor.supports_half`) unless half
        precision is off; on a CPU only where it also measured faster for this network, once
        (`cpu_serving_dtype`): oneDNN's bf16 kernels double SRCNN's, LapSRN's and EDSR's speed on
        AVX512-BF16 but slow FSRCNN down (x0.5-0.6). None = fp32."""
        if self.config.half_precision != "auto" or not descriptor.supports_half:
            return None
        if self.device.type != "cpu":
            return torch.bfloat16
        key = (descriptor.name, descriptor.scale)
        if key not in self._cpu_dtype:
            self._cpu_dtype[key] = cpu_serving_dtype(descriptor, th, tw)
        return self._cpu_dtype[key]

    def _recurring_shape(self, descriptor: SRDescriptor, th: int, tw: int) -> bool:
        """The full tile, or (fitted tiles) both sides on the `fit_step` grid: shapes that come back, worth
        a warm-up. An image's own odd size is autotuned where it runs instead (one job's cost, once)."""
        if th == tw == self.tile_side(descriptor, self.config.tile_size):
            return True
        step = self.config.fit_step
        return self.config.fit_tiles and step > 1 and th % step == 0 and tw % step == 0

    def _warm_up(self, descriptor: SRDescriptor, th: int, tw: int, limit: int, dtype: torch.dtype | None) -> None:
        """Run a recurring tile shape once at every bucketed batch size, so cuDNN's autotuning (per
        input shape) happens on the first job of that shape rather than spread over the next hundred."""
        t0 = time.perf_counter()
        sizes = sorted({self.padded_batch_size(n, limit) for n in range(1, limit + 1)})
        budget = self.config.memory_budget_bytes
        with torch.inference_mode():
            for n in sizes:
                if budget and _activation_bytes(descriptor, n, th, tw) > budget:
                    break
                try:
                    descriptor(torch.zeros(n, 3, th, tw, device=self.device), dtype=dtype)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    break  # the real batches back off on their own
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        log.info("warmed %s x%d up for %dx%d tiles at batch sizes %s in %.2f s",
                 descriptor.name, descriptor.scale, th, tw, sizes, time.perf_counter() - t0)


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
        self.padding_tiles = Counter(
            "srserve_batch_padding_tiles_total",
            "Repeated tiles that filled batches up to their bucketed size (computed, then dropped)",
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
