"""`srserve serve` with REDIS_URL unset: embedded Redis + a worker process + the API, answering a real
job end to end; SIGTERM stops all of it (no process left behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import REPO_ROOT, free_port
from tests.processes import popen_tied
from tests.service import images


def test_serve_all_in_one_with_embedded_redis(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("SRSERVE_")}
    env.update(
        {"SRSERVE_BLOB_DIR": str(tmp_path / "blobs"), "SRSERVE_DEVICE": "cpu", "SRSERVE_LOG_FORMAT": "text"}
    )
    log_path = tmp_path / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "srserve.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--redis-dir",
        str(tmp_path / "redis"),
    ]
    with log_path.open("wb") as log:
        proc = popen_tied(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names and "worker" in names

        resp = httpx.post(
            f"{base}/v1/upscale",
            files={"image": ("a.png", images.png(20, 16), "image/png")},
            data={"scale": "2", "model": "bicubic"},
        )
        assert resp.status_code == 202, resp.text
        job_url = base + resp.headers["location"]
        for _ in range(300):
            job = httpx.get(job_url).json()
            if job["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.1)
        assert job["status"] == "succeeded", job
        assert httpx.get(base + job["result"]["url"]).content[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
        survivors = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        for c in survivors:
            c.kill()
    assert code == 0, log_path.read_text()
    assert not survivors, f"left running after SIGTERM: {[c.cmdline() for c in survivors]}"
