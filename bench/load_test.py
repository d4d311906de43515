"""Bounded load test: N concurrent clients for D seconds against a running srserve (or one this script
starts), a mix of image sizes and models; reports server errors, lost jobs, latency percentiles and
the RSS of the API and worker processes at start and end (flat memory = no leak under load).

    python bench/load_test.py --spawn --clients 64 --duration 600          # own API + worker
    python bench/load_test.py --url http://127.0.0.1:8000 --api-pid 123 --worker-pid 456

Each client loops: POST /v1/upscale (random size and model; 429/503 are backpressure: it waits
Retry-After and retries), polls GET /v1/jobs/{id} until terminal, downloads the result and checks its
size. After D seconds no new job is started; in-flight jobs get --drain seconds to finish. A job
is *lost* if it was accepted (202) but did not end `succeeded` (404, failed, canceled, or still
pending after the drain). Writes a JSON report (--out, default bench/results/load_<time>.json).
With --spawn it uses REDIS_URL (default redis://127.0.0.1:6379, DB 12), a fresh queue and blob dir
(deleted at the end; job records expire after an hour). Transport errors (a keep-alive connection
closed under the client) are counted; GETs are retried up to 3 times before a job counts as lost.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image

from bench import exit_on_sigterm

log = logging.getLogger("load_test")
REPO = Path(__file__).resolve().parents[1]
SIZES = [(32, 32), (64, 48), (96, 96), (160, 120)]
MODELS = [("bicubic", 2), ("bicubic", 4), ("espcn_x4", 4)]
TERMINAL = {"succeeded", "failed", "canceled"}


def _png(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = (rng.random((max(1, height // 4), max(1, width // 4), 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.BICUBIC).save(buf, "PNG")
    return buf.getvalue()


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        return round(sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20, 1)
    except psutil.Error:
        return None


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


@dataclass
class Stats:
    submitted: int = 0
    accepted: list[str] = field(default_factory=list)
    succeeded: int = 0
    lost: dict[str, str] = field(default_factory=dict)  # job id -> why
    server_errors: dict[str, int] = field(default_factory=dict)  # "METHOD path status" -> count
    backpressure: int = 0  # 429 / 503 answers, retried
    client_errors: dict[str, int] = field(default_factory=dict)
    transport_errors: int = 0
    submit_latency: list[float] = field(default_factory=list)
    poll_latency: list[float] = field(default_factory=list)
    job_latency: list[float] = field(default_factory=list)  # accepted -> succeeded seen
    by_model: dict[str, int] = field(default_factory=dict)

    def count(self, bucket: dict[str, int], key: str) -> None:
        bucket[key] = bucket.get(key, 0) + 1


class Spawned:
    """`srserve api` + `srserve worker` subprocesses on a fresh queue (like production, no shortcuts)."""

    def __init__(self, workers: int, jobs_in_flight: int) -> None:
        base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
        self.redis_url = base if base.count("/") > 2 else f"{base}/12"
        self.tmp = Path(tempfile.mkdtemp(prefix="srserve-load-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "SRSERVE_QUEUE_NAME": f"load-{uuid.uuid4().hex[:8]}",
            "SRSERVE_BLOB_DIR": str(self.tmp / "blobs"),
            "SRSERVE_DEVICE": "cpu",
            "SRSERVE_LOG_FORMAT": "text",
            "SRSERVE_JOBS_IN_FLIGHT": str(jobs_in_flight),
            "SRSERVE_PRELOAD_MODELS": "bicubic:2,bicubic:4,espcn_x4:4",
            "SRSERVE_RESULT_TTL_S": "3600",  # the run's job records clean themselves up
        }
        cli = [sys.executable, "-m", "srserve.cli", "--log-level", "WARNING"]
        self.api = self._spawn("api", [*cli, "api", "--host", "127.0.0.1", "--port", str(self.port)])
        self.workers = [self._spawn(f"worker{i}", [*cli, "worker"]) for i in range(workers)]
        self.url = f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log_file = (self.tmp / f"{name}.log").open("wb")
        return subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=log_file, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in [self.api, *self.workers]:
                if p.poll() is not None:
                    raise SystemExit(f"a process exited early; logs in {self.tmp}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"service not ready in {timeout}s; logs in {self.tmp}")

    def stop(self) -> None:
        for p in [self.api, *self.workers]:
            if p.poll() is None:
                p.terminate()
        for p in [self.api, *self.workers]:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.tmp / "blobs", ignore_errors=True)  # logs stay for a post-mortem


async def _request(client: httpx.AsyncClient, stats: Stats, method: str, url: str, label: str,
                   **kw: Any) -> httpx.Response | None:
    # GETs are retried on a transport error like any HTTP client would (a pooled keep-alive
    # connection the server just closed); a POST is not: the caller decides (Idempotency-Key)
    attempts = 3 if method == "GET" else 1
    for attempt in range(attempts):
        try:
            resp = await client.request(method, url, **kw)
            break
        except httpx.TransportError as exc:
            stats.transport_errors += 1
            log.warning("%s %s: %s: %r", method, label, type(exc).__name__, exc)
            if attempt == attempts - 1:
                return None
            await asyncio.sleep(0.2 * (attempt + 1))
    if resp.status_code >= 500 and resp.status_code != 503:
        stats.count(stats.server_errors, f"{method} {label} {resp.status_code}")
    return resp


async def client_loop(cid: int, client: httpx.AsyncClient, stats: Stats, stop_at: float, drain_until: list[float],
                      images: dict[tuple[int, int], bytes], rng: random.Random, poll_s: float) -> None:
    while time.monotonic() < stop_at:
        size = rng.choice(SIZES)
        model, scale = rng.choice(MODELS)
        stats.submitted += 1
        t0 = time.monotonic()
        resp = await _request(client, stats, "POST", "/v1/upscale", "/v1/upscale",
                              files={"image": ("in.png", images[size], "image/png")},
                              data={"scale": str(scale), "model": model})
        if resp is None:
            await asyncio.sleep(1.0)
            continue
        if resp.status_code in (429, 503):  # backpressure or an outage: wait as told, try again
            stats.backpressure += 1
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
            continue
        if resp.status_code != 202:
            stats.count(stats.client_errors, f"POST {resp.status_code} {resp.text[:80]}")
            continue
        stats.submit_latency.append(time.monotonic() - t0)
        job_id = resp.json()["id"]
        stats.accepted.append(job_id)
        stats.count(stats.by_model, f"{model}x{scale}")
        while True:
            await asyncio.sleep(poll_s)
            t = time.monotonic()
            got = await _request(client, stats, "GET", f"/v1/jobs/{job_id}", "/v1/jobs/{id}")
            if got is None:
                continue
            stats.poll_latency.append(time.monotonic() - t)
            if got.status_code != 200:
                stats.lost[job_id] = f"GET answered {got.status_code}"
                break
            view = got.json()
            if view["status"] in TERMINAL:
                if view["status"] != "succeeded":
                    stats.lost[job_id] = f"{view['status']}: {view.get('error')}"
                    break
                stats.job_latency.append(time.monotonic() - t0)
                result = await _request(client, stats, "GET", view["result"]["url"], "/v1/jobs/{id}/result")
                if result is None or result.status_code != 200 or len(result.content) != view["result"]["bytes"]:
                    stats.lost[job_id] = "result download failed"
                else:
                    stats.succeeded += 1
                break
            if time.monotonic() > drain_until[0]:
                stats.lost[job_id] = f"still {view['status']} after the drain"
                break


async def run_load(url: str, clients: int, duration: float, drain: float, poll_s: float, seed: int,
                   pids: dict[str, int | None], api_key: str | None, warmup: float) -> dict[str, Any]:
    rng = random.Random(seed)
    images = {size: _png(*size, seed=i) for i, size in enumerate(SIZES)}
    stats = Stats()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    rss_start = {name: _rss_mb(pid) for name, pid in pids.items()}
    samples: list[dict[str, Any]] = []
    rss_warm: dict[str, float | None] = {}
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits, headers=headers) as client:
        start = time.monotonic()
        stop_at = start + duration
        drain_until = [stop_at + drain]

        async def after_warmup() -> None:
            await asyncio.sleep(min(warmup, duration))
            rss_warm.update({name: _rss_mb(pid) for name, pid in pids.items()})

        warm_task = asyncio.create_task(after_warmup())

        async def sample() -> None:
            while time.monotonic() < drain_until[0]:
                samples.append({"t": round(time.monotonic() - start, 1), "accepted": len(stats.accepted),
                                "succeeded": stats.succeeded,
                                **{f"rss_{n}_mb": _rss_mb(p) for n, p in pids.items()}})
                log.info("%s", samples[-1])
                await asyncio.sleep(min(30.0, max(2.0, duration / 20)))

        sampler = asyncio.create_task(sample())
        tasks = [client_loop(i, client, stats, stop_at, drain_until, images, random.Random(rng.random()), poll_s)
                 for i in range(clients)]
        await asyncio.gather(*tasks)
        sampler.cancel()
        warm_task.cancel()
        elapsed = time.monotonic() - start
    rss_end = {name: _rss_mb(pid) for name, pid in pids.items()}
    return {
        "url": url,
        "clients": clients,
        "duration_s": duration,
        "elapsed_s": round(elapsed, 1),
        "jobs_submitted": stats.submitted,
        "jobs_accepted": len(stats.accepted),
        "jobs_succeeded": stats.succeeded,
        "jobs_lost": len(stats.lost),
        "lost_examples": dict(list(stats.lost.items())[:10]),
        "server_errors": sum(stats.server_errors.values()),
        "server_errors_by_route": stats.server_errors,
        "backpressure_answers": stats.backpressure,
        "client_errors": stats.client_errors,
        "transport_errors": stats.transport_errors,
        "throughput_jobs_per_s": round(stats.succeeded / elapsed, 3) if elapsed else None,
        "jobs_by_model": stats.by_model,
        "latency_s": {
            name: {"p50": _pct(v, 50), "p90": _pct(v, 90), "p99": _pct(v, 99), "max": _pct(v, 100), "n": len(v)}
            for name, v in (("submit", stats.submit_latency), ("poll", stats.poll_latency),
                            ("job_end_to_end", stats.job_latency))
        },
        "rss_mb_start": rss_start,
        "rss_mb_after_warmup": rss_warm,
        "warmup_s": warmup,
        "rss_mb_end": rss_end,
        "rss_samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("SRSERVE_URL", "http://127.0.0.1:8000"))
    p.add_argument("--spawn", action="store_true", help="start an API + worker(s) for the run (uses REDIS_URL)")
    p.add_argument("--workers", type=int, default=1, help="worker processes with --spawn (default 1)")
    p.add_argument("--jobs-in-flight", type=int, default=8, help="SRSERVE_JOBS_IN_FLIGHT with --spawn")
    p.add_argument("--api-pid", type=int, default=None, help="API process to measure (not with --spawn)")
    p.add_argument("--worker-pid", type=int, default=None, help="worker process to measure (not with --spawn)")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    p.add_argument("--drain", type=float, default=300.0, help="seconds in-flight jobs get after that")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between status polls of one client")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=float, default=30.0, help="RSS is also read this long into the run")
    p.add_argument("--api-key", default=os.environ.get("SRSERVE_API_KEY"))
    p.add_argument("--out", type=Path, default=None, help="JSON report (default bench/results/load_<time>.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    exit_on_sigterm()
    spawned = Spawned(args.workers, args.jobs_in_flight) if args.spawn else None
    try:
        if spawned:
            spawned.wait_ready()
            url = spawned.url
            pids: dict[str, int | None] = {"api": spawned.api.pid}
            pids.update({f"worker{i}": w.pid for i, w in enumerate(spawned.workers)})
        else:
            url, pids = args.url, {"api": args.api_pid, "worker": args.worker_pid}
        report = asyncio.run(run_load(url, args.clients, args.duration, args.drain, args.poll, args.seed,
                                      pids, args.api_key, args.warmup))
    finally:
        if spawned:
            spawned.stop()
    report["command"] = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    report["machine"] = {"cpus": os.cpu_count(), "load_avg": os.getloadavg()}
    out = args.out or REPO / "bench" / "results" / f"load_{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: report[k] for k in ("jobs_accepted", "jobs_succeeded", "jobs_lost", "server_errors",
                                      "backpressure_answers", "throughput_jobs_per_s", "rss_mb_start",
                                      "rss_mb_after_warmup", "rss_mb_end")}
    log.info("report: %s\n%s\nlatency: %s", out, json.dumps(summary), json.dumps(report["latency_s"]))
    return 0 if report["jobs_lost"] == 0 and report["server_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
