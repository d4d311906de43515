"""End-to-end benchmark through the real stack: HTTP API (uvicorn) + Redis + one worker process,
N concurrent clients that submit, wait (long polls) and count finished jobs; batching on vs off; and, in the same
run against the same Redis, RQ's stock `SimpleWorker` draining no-op jobs (the floor of what any
RQ-based service can do per worker process).

    srserve bench e2e --clients 1,8,64 --model bicubic --size 64 --jobs 200

Uses REDIS_URL (default redis://127.0.0.1:6379, DB 11) and a fresh queue per case.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from redis import Redis

from bench import exit_on_sigterm, host_description

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_url() -> str:
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    return base if base.count("/") > 2 else f"{base}/11"


def _png(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = (rng.random((size // 4, size // 4, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).resize((size, size), Image.BICUBIC).save(buf, "PNG")
    return buf.getvalue()


class Stack:
    """API + one worker as subprocesses, like `srserve api` and `srserve worker` in production."""

    def __init__(self, redis_url: str, worker_env: dict[str, str], device: str = "cpu") -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="srserve-bench-")
        self.port = _free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SRSERVE_")},
            "REDIS_URL": redis_url,
            "SRSERVE_QUEUE_NAME": f"bench-{uuid.uuid4().hex[:8]}",
            "SRSERVE_BLOB_DIR": str(Path(self.tmp.name) / "blobs"),
            "SRSERVE_LOG_FORMAT": "text",
            "SRSERVE_MAX_QUEUE_DEPTH": "100000",
        }
        # CPU: one intra-op thread (tiny jobs are overhead-bound and the API shares the cores)
        threads = {"SRSERVE_TORCH_THREADS": "1"} if device == "cpu" else {}
        self.worker_env = {**self.env, "SRSERVE_DEVICE": device, **threads, **worker_env}
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Stack:
        cli = [sys.executable, "-m", "srserve.cli", "--log-level", "WARNING"]
        self.procs.append(
            subprocess.Popen(
                [*cli, "api", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO,
                env=self.env,
                stdout=subprocess.DEVNULL,
            )
        )
        self.procs.append(subprocess.Popen([*cli, "worker"], cwd=REPO, env=self.worker_env, stdout=subprocess.DEVNULL))
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the stack did not become ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.tmp.cleanup()


async def _client(
    base: str,
    body: bytes,
    model: str,
    n: int,
    latencies: list[float],
    errors: list[str],
    long_poll: bool = True,
    scale: int = 2,
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            r = await c.post(
                "/v1/upscale",
                files={"image": ("in.png", body, "image/png")},
                data={"scale": str(scale), "model": model},
            )
            if r.status_code != 202:
                errors.append(f"submit {r.status_code}")
                continue
            job_id = r.json()["id"]
            delay = 0.005
            while True:
                if long_poll:  # as srserve.client does: the answer comes when the job ends
                    s = (await c.get(f"/v1/jobs/{job_id}", params={"wait": 30})).json()
                else:  # short polls backing off from 5 to 50 ms: a typical hand-written client
                    await asyncio.sleep(delay)
                    s = (await c.get(f"/v1/jobs/{job_id}")).json()
                    delay = min(delay * 1.5, 0.05)
                if s["status"] in ("succeeded", "failed", "canceled"):
                    break
            if s["status"] != "succeeded":
                errors.append(s["status"])
            latencies.append(time.perf_counter() - t0)


def run_case(
    redis_url: str,
    clients: int,
    jobs: int,
    model: str,
    size: int,
    batching: bool,
    long_poll: bool = True,
    scale: int = 2,
    device: str = "cpu",
) -> dict[str, object]:
    worker_env = (
        {"SRSERVE_JOBS_IN_FLIGHT": "32", "SRSERVE_MAX_BATCH_SIZE": "32"}
        if batching
        else {"SRSERVE_JOBS_IN_FLIGHT": "1", "SRSERVE_MAX_BATCH_SIZE": "1"}
    )
    body = _png(size, 0)
    with Stack(redis_url, worker_env, device) as stack:
        # warm-up: model load, first batches
        asyncio.run(_gather(stack.url, body, model, min(clients, 4), 2, [], [], long_poll, scale))
        latencies: list[float] = []
        errors: list[str] = []
        per_client = max(1, jobs // clients)
        t0 = time.perf_counter()
        asyncio.run(_gather(stack.url, body, model, clients, per_client, latencies, errors, long_poll, scale))
        elapsed = time.perf_counter() - t0
    done = len(latencies)
    return {
        "case": f"api+worker, batching {'on' if batching else 'off'}" + ("" if long_poll else ", short polls"),
        "clients": clients,
        "jobs": done,
        "errors": len(errors),
        "seconds": round(elapsed, 2),
        "jobs_s": round(done / elapsed, 1),
        "p50_s": round(statistics.median(latencies), 4),
        "p95_s": round(float(np.percentile(latencies, 95)), 4),
    }


async def _gather(
    base: str,
    body: bytes,
    model: str,
    clients: int,
    per: int,
    lat: list[float],
    err: list[str],
    long_poll: bool,
    scale: int = 2,
) -> None:
    await asyncio.gather(*[_client(base, body, model, per, lat, err, long_poll, scale) for _ in range(clients)])


def run_simpleworker_noop(redis_url: str, jobs: int) -> dict[str, object]:
    """RQ's stock SimpleWorker (`rq worker -w rq.SimpleWorker --burst`) draining no-op jobs."""
    from rq import Queue

    conn = Redis.from_url(redis_url)
    name = f"noop-{uuid.uuid4().hex[:8]}"
    q = Queue(name, connection=conn)
    for _ in range(jobs):
        q.enqueue("bench.e2e_bench.noop")
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--url",
            redis_url,
            "-w",
            "rq.SimpleWorker",
            "--burst",
            "--quiet",
            name,
        ],
        cwd=REPO,
        check=True,
    )
    elapsed = time.perf_counter() - t0
    q.delete(delete_jobs=True)
    return {
        "case": "RQ SimpleWorker, no-op job (enqueued in advance)",
        "clients": 0,
        "jobs": jobs,
        "errors": 0,
        "seconds": round(elapsed, 2),
        "jobs_s": round(jobs / elapsed, 1),
        "p50_s": None,
        "p95_s": None,
    }


def noop() -> None:
    return None


def run(args: argparse.Namespace) -> int:
    exit_on_sigterm()
    redis_url = _redis_url()
    rows = [run_simpleworker_noop(redis_url, args.jobs)]
    for clients in [int(c) for c in args.clients.split(",")]:
        # batching off / on, then the same load with clients that short-poll (what long polls save)
        for batching, long_poll in ((False, True), (True, True), (True, False)):
            row = run_case(redis_url, clients, args.jobs, args.model, args.size, batching, long_poll,
                           args.scale, args.device)
            log.info("%s", row)
            rows.append(row)
            _write(args, rows)  # after every case: a run stopped early keeps what it measured
    sys.stdout.write((Path(args.out) / f"{args.tag}.md").read_text())
    return 0


def _write(args: argparse.Namespace, rows: list[dict[str, object]]) -> None:
    machine = host_description()
    if args.device.startswith("cuda"):
        import torch

        machine += f"; GPU {torch.cuda.get_device_name(0)}; worker on {args.device}"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag}.json").write_text(
        json.dumps({"machine": machine, "date": stamp, "model": args.model, "size": args.size, "scale": args.scale,
                    "rows": rows}, indent=1)
    )
    base = rows[0]["jobs_s"]
    lines = [
        f"# End-to-end benchmark ({args.tag})",
        "",
        f"Machine: {machine}  ",
        f"Date: {stamp}  ",
        f"Jobs: `{args.model}` x{args.scale} on {args.size}x{args.size} PNG inputs, submitted over HTTP, waited for "
        "with long polls (`?wait=30`; \"short polls\": 5-50 ms polling instead); one worker process.",
        "",
        "| case | clients | jobs | errors | jobs/s | vs SimpleWorker no-op | p50 s | p95 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = float(r["jobs_s"]) / float(base) if base else float("nan")
        lines.append(
            f"| {r['case']} | {r['clients']} | {r['jobs']} | {r['errors']} | {r['jobs_s']} | "
            f"{ratio:.2f}x | {r['p50_s'] or ''} | {r['p95_s'] or ''} |"
        )
    (out / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
