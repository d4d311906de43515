"""The compose stack run locally: the `api` and `worker-cpu` services of docker-compose.yml, each
with its own command and environment, hostnames mapped to 127.0.0.1, against the test Redis.
Shared by the compose test and the Prometheus test (started once per session)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.deploy.compose import LocalService, load_compose, localize
from tests.deploy.helpers import REPO, child_process, free_port, http_status, wait_until


@dataclass
class ComposeStack:
    api_url: str
    metrics_url: str  # the worker's
    api: LocalService
    worker: LocalService
    api_log: Path
    worker_log: Path
    ready_before_worker: int | None
    redis: redis.Redis
    worker_proc: subprocess.Popen


def redis_test_url() -> str:
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    base = re.sub(r"/\d+$", "", base)
    # A DB of its own, next to the suite's: the compose stack flushes it, and must not wipe the
    # registrations of the session's live worker (tests/conftest.py) on SRSERVE_TEST_REDIS_DB.
    db = (int(os.environ.get("SRSERVE_TEST_REDIS_DB", "9")) + 1) % 16
    return f"{base}/{int(os.environ.get('SRSERVE_TEST_DEPLOY_REDIS_DB', db))}"


def _process_env(service: LocalService) -> dict[str, str]:
    # Like a container: the image + compose environment only, plus what a Python process needs.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(service.env)
    env["PYTHONPATH"] = str(REPO)  # the image installs the wheel; here the source tree stands in
    return env


def _argv(service: LocalService) -> list[str]:
    # `srserve` is the console script `srserve.cli:main` (pyproject, asserted below): same entry point.
    assert service.argv[0] == "srserve"
    return [sys.executable, "-m", "srserve.cli", *service.argv[1:]]


@contextlib.contextmanager
def run_stack(
    compose: dict[str, Any], root: Path, ports: dict[int, int], worker: str = "worker-cpu", flush: bool = True
) -> Iterator[ComposeStack]:
    """Start the compose `api`, wait for /healthz, then `worker`, wait for /readyz; stop both on exit.
    `ports` maps container ports (and ports of other compose services, e.g. minio's) to local ones.
    `flush`: empty the test Redis DB before and after (off for a stack started beside another one,
    which then needs its own SRSERVE_QUEUE_NAME)."""
    redis_url = redis_test_url()
    r = redis.Redis.from_url(redis_url)
    if flush:
        r.flushdb()
    api_service = localize(compose, "api", redis_url=redis_url, volume_root=root / "volumes", ports=ports)
    worker_service = localize(compose, worker, redis_url=redis_url, volume_root=root / "volumes", ports=ports)
    workdir = root / "home"  # like WORKDIR /home/srserve: nothing may depend on running from the repo
    workdir.mkdir(exist_ok=True)
    api_url = f"http://127.0.0.1:{ports[8000]}"
    api_log, worker_log = root / "api.log", root / "worker.log"
    try:
        with child_process(_argv(api_service), api_log, env=_process_env(api_service), cwd=workdir) as api_proc:
            wait_until(lambda: http_status(f"{api_url}/healthz") == 200, 60, "api /healthz", api_proc, api_log)
            ready_before_worker = http_status(f"{api_url}/readyz")
            with child_process(
                _argv(worker_service), worker_log, env=_process_env(worker_service), cwd=workdir
            ) as worker_proc:
                wait_until(
                    lambda: http_status(f"{api_url}/readyz") == 200,
                    120,
                    "/readyz 200 once the worker is up",
                    worker_proc,
                    worker_log,
                )
                yield ComposeStack(
                    api_url,
                    f"http://127.0.0.1:{ports[9100]}/metrics",
                    api_service,
                    worker_service,
                    api_log,
                    worker_log,
                    ready_before_worker,
                    r,
                    worker_proc,
                )
    finally:
        if flush:
            r.flushdb()


@pytest.fixture(scope="session")
def compose_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^srserve = "srserve\.cli:main"$', pyproject, re.MULTILINE)
    ports = {8000: free_port(), 9100: free_port()}
    with run_stack(load_compose(), tmp_path_factory.mktemp("compose"), ports) as stack:
        yield stack
