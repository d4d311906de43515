"""`srserve upscale IN... -o OUT`: upscale files or folders through a running service.

Submits up to `--concurrency` jobs at a time with the async client, shows one progress bar per
file, writes the results, prints a summary table with the quality metrics, and exits 1 when any
file failed (2 for usage errors). `--burst` sends all inputs as the frames of one burst job.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from srserve.client import AsyncClient
    from srserve.schemas import JobView

log = logging.getLogger(__name__)

# Which folder entries count as images; files named explicitly are always sent (the service decides).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
OUTPUT_SUFFIX = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "upscale",
        help="upscale images through a running srserve API",
        description="Upscale image files (or every image in a folder) through a running srserve API.",
    )
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders of images")
    p.add_argument("-o", "--output", metavar="OUT", help="output folder (or file name, for one job)")
    p.add_argument("--model", default=None, help="model name or family (default: the best for --scale)")
    p.add_argument("--scale", type=int, default=4, help="upscaling factor (default 4)")
    p.add_argument("--format", choices=sorted(OUTPUT_SUFFIX), default="png", help="output format")
    p.add_argument("--reference", metavar="HR", help="ground-truth HR image: adds PSNR/SSIM (one job only)")
    p.add_argument("--burst", action="store_true", help="send all inputs as frames of one burst job")
    p.add_argument("--reference-frame", type=int, default=None, help="burst frame the output aligns to")
    p.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait for results and download them (--no-wait: submit, print job ids, exit)",
    )
    p.add_argument("--concurrency", type=int, default=4, help="jobs in flight at once (default 4)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each job (default 600)")
    p.add_argument(
        "--url",
        default=os.environ.get("SRSERVE_URL", "http://127.0.0.1:8000"),
        help="API base URL (env SRSERVE_URL; default http://127.0.0.1:8000)",
    )
    p.add_argument("--api-key", default=os.environ.get("SRSERVE_API_KEY"), help="API key (env SRSERVE_API_KEY)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: only when stderr is a terminal)",
    )
    p.set_defaults(handler=run)


@dataclass
class Task:
    """One job: a single file, or all frames of a burst."""

    label: str
    sources: list[Path]
    output: Path | None
    job: JobView | None = None
    status: str = "pending"
    error: str = ""
    wall_s: float | None = None


def collect_inputs(inputs: Sequence[str]) -> list[Path]:
    """Expand folders (their image files, sorted, not recursive); keep explicit files as given."""
    found: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(
                    f
                    for f in path.iterdir()
                    if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {raw}")
    return found


def plan_outputs(sources: list[Path], output: str | None, scale: int, fmt: str, burst: bool, wait: bool) -> list[Task]:
    """One Task per job with its output path; a single job may name an output file directly."""
    groups = [sources] if burst else [[s] for s in sources]
    suffix = OUTPUT_SUFFIX[fmt]
    if not wait:
        return [Task(g[0].name if len(g) == 1 else f"{g[0].name} (+{len(g) - 1})", g, None) for g in groups]
    if output is None:
        raise ValueError("-o/--output is required unless --no-wait")
    out = Path(output)
    if len(groups) == 1 and out.suffix.lower() in set(OUTPUT_SUFFIX.values()) | {".jpeg"}:
        out.parent.mkdir(parents=True, exist_ok=True)
        g = groups[0]
        return [Task(g[0].name if not burst else f"burst of {len(g)}", g, out)]
    out.mkdir(parents=True, exist_ok=True)
    tasks: list[Task] = []
    used: set[str] = set()
    for g in groups:
        stem = f"{g[0].stem}_x{scale}" + ("_burst" if burst else "")
        name, n = stem + suffix, 1
        while name in used:  # a.png and a.jpg in one run must not overwrite each other
            n += 1
            name = f"{stem}_{n}{suffix}"
        used.add(name)
        label = g[0].name if not burst else f"burst of {len(g)}"
        tasks.append(Task(label, g, out / name))
    return tasks


def _describe(exc: BaseException) -> tuple[str, str]:
    """(status, message) for the summary table."""
    from srserve.client import APIError, JobFailedError, JobTimeoutError

    if isinstance(exc, APIError):
        return "rejected", f"{exc.code}: {exc.message}"
    if isinstance(exc, JobFailedError):
        return exc.job.status, f"{exc.code}: {exc.error.message}"
    if isinstance(exc, JobTimeoutError):
        return "timeout", str(exc)
    return "error", f"{type(exc).__name__}: {exc}"


async def _run_one(client: AsyncClient, task: Task, args: argparse.Namespace, sem: asyncio.Semaphore, bar: Any) -> None:
    from srserve.client import JobFailedError

    burst = len(task.sources) > 1 or args.burst
    async with sem:
        start = time.monotonic()
        try:
            task.status = "submitting"
            submit_kw: dict[str, Any] = {
                "model": args.model,
                "scale": args.scale,
                "reference": Path(args.reference) if args.reference else None,
                "format": args.format,
            }
            if burst:
                job = await client.submit(frames=task.sources, reference_frame=args.reference_frame, **submit_kw)
            else:
                job = await client.submit(task.sources[0], **submit_kw)
            task.job, task.status = job, job.status
            if not args.wait:
                return

            def on_progress(view: JobView) -> None:
                task.job, task.status = view, view.status
                if bar is not None:
                    bar.n = round(view.progress * 100)
                    bar.set_postfix_str(view.status, refresh=False)
                    bar.refresh()

            job = await client.wait(job.id, timeout=args.timeout, on_progress=on_progress)
            task.job, task.status = job, job.status
            if job.status != "succeeded":
                raise JobFailedError(job)
            data = await client.result(job)
            assert task.output is not None
            task.output.write_bytes(data)
        except Exception as exc:  # any failure is reported per file; the others go on
            task.status, task.error = _describe(exc)
            log.debug("upscale of %s failed", task.label, exc_info=True)
        finally:
            task.wall_s = time.monotonic() - start
            if bar is not None:
                bar.set_postfix_str(task.status, refresh=False)
                bar.refresh()


async def _run_all(tasks: list[Task], args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from srserve.client import AsyncClient

    show = args.progress if args.progress is not None else sys.stderr.isatty()
    width = min(32, max(len(t.label) for t in tasks))
    bars = [
        tqdm(
            total=100,
            desc=t.label[:width].ljust(width),
            position=i,
            leave=True,
            bar_format="{desc} {percentage:3.0f}%|{bar:24}| {elapsed} {postfix}",  # job progress, not a rate
            disable=not (show and args.wait),
        )
        for i, t in enumerate(tasks)
    ]
    sem = asyncio.Semaphore(max(1, args.concurrency))
    try:
        async with AsyncClient(args.url, api_key=args.api_key) as client:
            await asyncio.gather(*(_run_one(client, t, args, sem, b) for t, b in zip(tasks, bars, strict=True)))
    finally:
        for b in bars:
            b.close()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_rows(tasks: list[Task], wait: bool) -> tuple[list[str], list[list[str]]]:
    if not wait:
        header = ["FILE", "JOB", "STATUS", "MESSAGE"]
        return header, [[t.label, t.job.id if t.job else "-", t.status, t.error] for t in tasks]
    header = ["FILE", "STATUS", "MODEL", "SIZE", "PSNR", "SSIM", "GAIN", "LR-CONS"]
    header += ["INFER_s", "TIME_s", "OUTPUT"]
    rows = []
    for t in tasks:
        job, m = t.job, (t.job.metrics if t.job else None)
        size = f"{job.result.width}x{job.result.height}" if job and job.result else "-"
        gain = None  # PSNR over plain bicubic, the number that says whether the model earned its cost
        if m and m.psnr_y is not None and m.bicubic_psnr_y is not None:
            gain = m.psnr_y - m.bicubic_psnr_y
        rows.append(
            [
                t.label,
                t.status,
                (m.model if m and m.model else (job.model if job else "-")),
                size,
                _fmt(m.psnr_y if m else None, ".2f"),
                _fmt(m.ssim_y if m else None, ".4f"),
                _fmt(gain, "+.2f"),
                _fmt(m.lr_consistency_psnr if m else None, ".2f"),
                _fmt(m.timings.inference_s if m else None, ".3f"),
                _fmt(t.wall_s, ".2f"),
                str(t.output) if t.status == "succeeded" else t.error,
            ]
        )
    return header, rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # httpx logs every request at INFO: one line per poll would drown the progress bars
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        sources = collect_inputs(args.inputs)
        if not sources:
            raise ValueError("no image files found in the given inputs")
        if args.reference and len(sources) > 1 and not args.burst:
            raise ValueError("--reference applies to one job: give one input, or use --burst")
        if args.burst and len(sources) < 2:
            raise ValueError("--burst needs at least two frames")
        tasks = plan_outputs(sources, args.output, args.scale, args.format, args.burst, args.wait)
    except (OSError, ValueError) as exc:
        print(f"srserve upscale: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    asyncio.run(_run_all(tasks, args))
    header, rows = summary_rows(tasks, args.wait)
    print(format_table(header, rows))
    failed = [t for t in tasks if t.job is None or t.error or (args.wait and t.status != "succeeded")]
    verb = "done" if args.wait else "submitted"
    print(f"{len(tasks) - len(failed)} of {len(tasks)} {verb}, {len(failed)} failed")
    for t in tasks:  # conversions the service applied (alpha, bit depth, EXIF...) are worth knowing
        if t.job and t.job.metrics and t.job.metrics.notes:
            print(f"note: {t.label}: {'; '.join(t.job.metrics.notes)}")
    return EXIT_FAILED if failed else EXIT_OK
