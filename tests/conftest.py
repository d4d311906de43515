"""Shared fixtures: a real Redis (REDIS_URL, DB from SRSERVE_TEST_REDIS_DB), the eval data, and a
live service: a real `srserve worker` process and a real `srserve api` (uvicorn) process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from redis import Redis

from tests.processes import popen_tied

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SRSERVE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
START_TIMEOUT_S = 90.0  # the worker imports torch: slow on a busy 2-core machine


def redis_url_with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(db)
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path=f"/{db}"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> str:
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    url = redis_url_with_db(base, int(os.environ.get("SRSERVE_TEST_REDIS_DB", "9")))
    conn = Redis.from_url(url, socket_connect_timeout=3)
    try:
        conn.ping()
    except Exception as exc:  # a missing Redis is a broken test setup, never a skip
        pytest.fail(f"Redis at {url} is not reachable ({exc}); start one or set REDIS_URL", pytrace=False)
    conn.flushdb()
    conn.close()
    return url


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[Redis]:
    conn = Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "eval" / "Set5").is_dir():
        pytest.fail(f"eval data not found under {DATA_DIR}; set SRSERVE_DATA_DIR", pytrace=False)
    return DATA_DIR


@dataclass
class LiveService:
    base_url: str
    redis_url: str
    queue_name: str
    blob_dir: Path
    worker_metrics_url: str
    env: dict[str, str]
    logs: dict[str, Path]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30.0, **kw)  # type: ignore[arg-type]

    def wait_for(self, job_id: str, statuses: set[str], timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while True:
                body = c.get(f"/v1/jobs/{job_id}").json()
                if body.get("status") in statuses:
                    return body
                if time.monotonic() > deadline:
                    raise AssertionError(f"job {job_id} still {body.get('status')} after {timeout}s: {body}")
                time.sleep(0.05)

    def log_tail(self, name: str, lines: int = 40) -> str:
        return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Limits small enough to test cheaply; everything else is the production default.
LIVE_LIMITS = {
    "SRSERVE_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),
    "SRSERVE_MAX_INPUT_PIXELS": "1000000",
    "SRSERVE_MAX_OUTPUT_PIXELS": "16000000",
    # two jobs in flight: enough to exercise cross-job batching, few enough to fill in queue tests
    "SRSERVE_JOBS_IN_FLIGHT": "2",
}


@contextlib.contextmanager
def start_live_service(
    redis_url: str, root: Path, extra_env: dict[str, str] | None = None, name: str = "test"
) -> Iterator[LiveService]:
    """A real `srserve worker` and `srserve api` on free ports, with their own queue and blob folder,
    ready (/readyz 200) when this yields; both stopped on exit."""
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRSERVE_") or k == "SRSERVE_DATA_DIR"}
    env.update(
        {
            "REDIS_URL": redis_url,
            "SRSERVE_QUEUE_NAME": f"{name}-{uuid.uuid4().hex[:10]}",
            "SRSERVE_BLOB_DIR": str(root / "blobs"),
            "SRSERVE_DEVICE": "cpu",
            "SRSERVE_METRICS_PORT": str(metrics_port),
            "SRSERVE_METRICS_HOST": "127.0.0.1",
            "SRSERVE_LOG_FORMAT": "text",
            "SRSERVE_JOB_RETRIES": "2",
            **LIVE_LIMITS,
            **(extra_env or {}),
        }
    )
    live = LiveService(
        base_url=f"http://127.0.0.1:{port}",
        redis_url=redis_url,
        queue_name=env["SRSERVE_QUEUE_NAME"],
        blob_dir=root / "blobs",
        worker_metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        env=env,
        logs={"worker": root / "worker.log", "api": root / "api.log"},
    )
    cli = [sys.executable, "-m", "srserve.cli"]
    commands = {
        "worker": [*cli, "worker", "--name", f"{name}-worker-{uuid.uuid4().hex[:6]}"],
        "api": [*cli, "api", "--host", "127.0.0.1", "--port", str(port)],
    }
    try:
        for proc_name, cmd in commands.items():
            with live.logs[proc_name].open("wb") as log:
                live.procs[proc_name] = popen_tied(
                    cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for proc_name, proc in live.procs.items():
                if proc.poll() is not None:
                    pytest.fail(
                        f"{proc_name} exited with {proc.returncode}:\n{live.log_tail(proc_name)}", pytrace=False
                    )
            try:
                if httpx.get(f"{live.base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"service not ready in {START_TIMEOUT_S}s\nworker:\n{live.log_tail('worker')}\n"
                    f"api:\n{live.log_tail('api')}",
                    pytrace=False,
                )
            time.sleep(0.2)
        yield live
    finally:
        for proc in live.procs.values():
            _stop(proc)


@pytest.fixture(scope="session")
def live_service(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with start_live_service(redis_url, tmp_path_factory.mktemp("live")) as live:
        yield live


@pytest.fixture
def live(live_service: LiveService) -> Iterator[LiveService]:
    """The live service, checked to be still serving (and its processes alive) after each test."""
    yield live_service
    for name, proc in live_service.procs.items():
        assert proc.poll() is None, f"{name} died:\n{live_service.log_tail(name)}"
    assert httpx.get(f"{live_service.base_url}/healthz", timeout=5).status_code == 200
