"""Model-level benchmark: naive vs pure vs engine, side by side in one run, on one device.

1. naive  - per-image fp32 forward on the whole image, batch 1 (what reference inference scripts do);
2. pure   - the model's batched forward alone at its best batch size and dtype, inputs already on the
            device (the practical ceiling);
3. engine - our worker path from encoded input to encoded output: decode, tiling, cross-job dynamic
            batching, stitching, PNG encode, with many jobs in flight (job threads), plus the same
            path without decode/encode ("engine-infer") to show where the time goes.

    srserve bench models --device auto --models fsrcnn_x4,edsr_baseline_x4 --sizes 128,256,512,1920x1080

Writes JSON and a markdown table (with the machine's description) under bench/results/.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench import host_description, served_catalog
from model_store.card import ModelCard
from model_store.registry import SRDescriptor, load_descriptor
from srserve import imaging
from worker.engine import EngineConfig, InferenceEngine
from worker.jobs import engine_config, set_torch_threads
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass
class Case:
    model: str
    size: str
    mode: str  # naive | pure | engine | engine-infer
    device: str
    dtype: str
    batch: int  # batch size used (pure) or largest batch seen (engine)
    images: int
    seconds: float
    out_mpix_s: float
    images_s: float
    p50_s: float | None
    p95_s: float | None
    gpu_mem_gib: float | None
    note: str = ""


def machine_description(device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return f"{host_description()}; GPU {gpu}; torch {torch.__version__}, {torch.get_num_threads()} intra-op threads"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def parse_size(text: str) -> tuple[int, int]:
    if "x" in text:
        w, h = text.split("x")
        return int(h), int(w)
    return int(text), int(text)


def _inputs(h: int, w: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """Natural-looking test inputs: crops of smooth noise with edges (content barely matters for speed)."""
    rng = np.random.default_rng(seed)
    base = rng.random((n, h // 8 + 2, w // 8 + 2, 3), dtype=np.float32)
    out = []
    for i in range(n):
        img = np.asarray(Image.fromarray((base[i] * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
        out.append(img.astype(np.float32) / 255.0)
    return out


def _timed(fn: Callable[[], None], device: torch.device, seconds: float, min_iters: int = 3) -> list[float]:
    fn()  # warm-up (cuDNN autotuning, allocator)
    _sync(device)
    times: list[float] = []
    t_end = time.perf_counter() + seconds
    while len(times) < min_iters or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) > 1000:
            break
    return times


def bench_naive(desc: SRDescriptor, img: np.ndarray, device: torch.device, seconds: float) -> Case:
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    out_px = img.shape[0] * img.shape[1] * desc.scale**2
    _reset_peak(device)

    def run() -> None:
        y = desc(x.to(device))  # fp32, whole image, one at a time, result back to the host
        y.cpu()

    times = _timed(run, device, seconds)
    med = statistics.median(times)
    return Case(
        desc.name,
        "",
        "naive",
        device.type,
        "fp32",
        1,
        len(times),
        sum(times),
        out_px / med / 1e6,
        1 / med,
        med,
        float(np.percentile(times, 95)),
        _peak_gib(device),
    )


def bench_pure(desc: SRDescriptor, img: np.ndarray, device: torch.device, seconds: float) -> Case:
    """Best (batch, dtype) of the bare batched forward on device-resident inputs."""
    h, w = img.shape[:2]
    out_px = h * w * desc.scale**2
    dtypes: list[tuple[str, torch.dtype | None]] = [("fp32", None)]
    if desc.supports_half:  # safe on this device (on a CPU: measured there, and native bf16)
        dtypes.append(("bf16", torch.bfloat16))
    best: Case | None = None
    max_batch = max(1, min(64, (4096 * 4096) // (h * w)))
    for dname, dtype in dtypes:
        batch = 1
        while batch <= max_batch:
            try:
                x = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(batch, 1, 1, 1).to(device)
                _reset_peak(device)
                times = _timed(lambda x=x, dtype=dtype: desc(x, dtype=dtype), device, seconds / 4, min_iters=2)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                break
            med = statistics.median(times)
            case = Case(
                desc.name,
                "",
                "pure",
                device.type,
                dname,
                batch,
                len(times) * batch,
                sum(times),
                batch * out_px / med / 1e6,
                batch / med,
                None,
                None,
                _peak_gib(device),
            )
            if best is None or case.out_mpix_s > best.out_mpix_s:
                best = case
            if device.type == "cpu" and batch >= 4:
                break  # CPU throughput is flat in batch; keep the run short
            batch *= 2
    assert best is not None
    return best


def bench_engine(
    desc: SRDescriptor,
    imgs: list[np.ndarray],
    device: torch.device,
    *,
    config: EngineConfig,
    jobs_in_flight: int,
    with_codec: bool,
    profile_to: Path | None = None,
) -> Case:
    """Run len(imgs) jobs through an engine with `config` and `jobs_in_flight` concurrent job threads.
    With `profile_to`, the timed part runs under torch.profiler and its table is written there (the
    timings of such a pass carry the profiler's overhead: report the unprofiled pass)."""
    engine = InferenceEngine(config).start()
    encoded = [imaging.encode(i, "png")[0] for i in imgs] if with_codec else []
    stats_batches: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> float:
        t0 = time.perf_counter()
        # 8-bit results, rounded on the device, as the worker asks for every 8-bit job
        if with_codec:
            decoded = imaging.decode(encoded[i], max_pixels=1 << 31)
            out, stats = engine.upscale(desc, decoded.rgb, eight_bit=True)
            imaging.encode(out, "png")
        else:
            out, stats = engine.upscale(desc, imgs[i], eight_bit=True)
        with lock:
            stats_batches.append(stats.max_batch)
        return time.perf_counter() - t0

    try:
        one(0)  # warm-up: cuDNN autotuning for this tile shape
        _sync(device)
        _reset_peak(device)
        profiler = _engine_profiler(device) if profile_to else contextlib.nullcontext()
        t0 = time.perf_counter()
        with profiler:
            with ThreadPoolExecutor(jobs_in_flight) as pool:
                latencies = list(pool.map(one, range(len(imgs))))
            _sync(device)
        total = time.perf_counter() - t0
    finally:
        engine.stop()
    if profile_to is not None:
        _write_profile(profiler, device, total, profile_to)
    out_px = sum(i.shape[0] * i.shape[1] for i in imgs) * desc.scale**2
    return Case(
        desc.name,
        "",
        "engine" if with_codec else "engine-infer",
        device.type,
        "bf16" if engine.serving_dtype(desc) == torch.bfloat16 else "fp32",  # the engine's own choice
        max(stats_batches),
        len(imgs),
        total,
        out_px / total / 1e6,
        len(imgs) / total,
        statistics.median(latencies),
        float(np.percentile(latencies, 95)),
        _peak_gib(device),
        f"tiles up to {config.tile_size}{' fitted' if config.fit_tiles else ''}, {jobs_in_flight} jobs in flight",
    )


def _engine_profiler(device: torch.device) -> torch.profiler.profile:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    try:  # the engine's device and completion threads, not only this one
        config = torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
    except TypeError:  # older torch: the calling thread (and the device's kernels) only
        return torch.profiler.profile(activities=activities)
    return torch.profiler.profile(activities=activities, experimental_config=config)


def _write_profile(prof: torch.profiler.profile, device: torch.device, wall_s: float, path: Path) -> None:
    """The op table of a profiled engine pass, with how busy the device was: where an engine below the
    pure forward loses its time (kernels vs gaps between them vs host-side work)."""
    events = prof.key_averages()
    head = [f"engine-infer pass under torch.profiler: {wall_s:.3f} s wall on {device.type}"]
    if device.type == "cuda":
        kernel_s = sum(e.self_device_time_total for e in events) / 1e6
        head.append(f"device busy (sum of kernel and copy time / wall): {kernel_s:.3f} s, {kernel_s / wall_s:.0%}")
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(head) + "\n\n" + events.table(sort_by=sort, row_limit=40) + "\n")
    log.info("profile written to %s", path)


def run(
    models: list[str],
    sizes: list[str],
    device_name: str,
    seconds: float,
    out_dir: Path,
    tag: str,
    scale: int = 4,
    profile_dir: Path | None = None,
) -> list[Case]:
    device = torch.device(
        "cuda"
        if device_name == "auto" and torch.cuda.is_available()
        else ("cpu" if device_name == "auto" else device_name)
    )
    catalog = served_catalog()
    cases: list[Case] = []
    gpu = device.type == "cuda"
    settings = WorkerSettings(device=device.type)
    set_torch_threads(settings)  # what a worker on this machine uses, for every mode
    config = engine_config(settings, str(device))  # and its engine
    for name in models:
        card: ModelCard = catalog.resolve(name, scale)
        desc = load_descriptor(card, scale, catalog=catalog, device=device)
        for size in sizes:
            h, w = parse_size(size)
            big = h * w >= 1920 * 1080
            n_jobs = (8 if big else 64) if gpu else (2 if big else 8)
            imgs = _inputs(h, w, n_jobs)
            log.info("bench %s %s on %s", card.name, size, device)
            row = [bench_naive(desc, imgs[0], device, seconds), bench_pure(desc, imgs[0], device, seconds)]
            jobs = 64 if gpu else 4
            for with_codec in (False, True):
                row.append(bench_engine(desc, imgs, device, config=config, jobs_in_flight=jobs, with_codec=with_codec))
            if profile_dir is not None:  # one more, untimed pass, profiled
                bench_engine(desc, imgs, device, config=config, jobs_in_flight=jobs, with_codec=False,
                             profile_to=profile_dir / f"profile_{card.name}_{size}_{device.type}.txt")
            for c in row:
                c.size = size
                c.model = card.name
            cases.extend(row)
            log.info("  " + "  ".join(f"{c.mode}={c.out_mpix_s:.1f}MP/s" for c in row))
        write_results(cases, device, out_dir, tag)  # after every model: a run stopped early keeps its rows
    return cases


def write_results(cases: list[Case], device: torch.device, out_dir: Path, tag: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_description(device)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (out_dir / f"{tag}.json").write_text(
        json.dumps({"machine": machine, "date": stamp, "cases": [asdict(c) for c in cases]}, indent=1)
    )
    lines = [
        f"# Model benchmark: {tag}",
        "",
        f"Machine: {machine}  ",
        f"Date: {stamp}",
        "",
        "| model | input | mode | dtype | batch | out MP/s | images/s | p50 s | p95 s | GPU GiB | vs naive | vs pure |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key: dict[tuple[str, str], dict[str, Case]] = {}
    for c in cases:
        by_key.setdefault((c.model, c.size), {})[c.mode] = c
    for (model, size), modes in by_key.items():
        for mode in ("naive", "pure", "engine-infer", "engine"):
            c = modes.get(mode)
            if c is None:
                continue
            vs_naive = c.out_mpix_s / modes["naive"].out_mpix_s if "naive" in modes else float("nan")
            vs_pure = c.out_mpix_s / modes["pure"].out_mpix_s if "pure" in modes else float("nan")
            fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(
                f"| {model} | {size} | {mode} | {c.dtype} | {c.batch} | {c.out_mpix_s:.1f} | {c.images_s:.2f} | "
                f"{fmt(c.p50_s)} | {fmt(c.p95_s)} | {'' if c.gpu_mem_gib is None else c.gpu_mem_gib} | "
                f"{vs_naive:.2f}x | {vs_pure:.2f}x |"
            )
    lines += [
        "",
        "Modes: naive = whole image, batch 1, fp32; pure = bare batched forward at the best batch/dtype "
        "with inputs on the device; engine-infer = our engine (tiling + cross-job batching + stitching) on "
        "decoded arrays; engine = the same plus PNG decode and encode in the job threads.",
    ]
    (out_dir / f"{tag}.md").write_text("\n".join(lines) + "\n")


def _io_probe() -> None:  # keeps Pillow's WebP/PNG plugins imported before threads start
    Image.new("RGB", (2, 2)).save(io.BytesIO(), "PNG")


_io_probe()
