"""docker-compose.yml without a Docker engine: its structure is what the issue asks for, every
variable is one the settings classes read, the monitoring configs it mounts are valid, and the
`api` and `worker-cpu` services run for real here — each service's own command and environment
(image ENV + compose environment), with hostnames mapped to 127.0.0.1, against the test Redis —
until /readyz says ready and a bicubic job goes through."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from srserve.client import Client
from tests.deploy.compose import dockerfile_env, load_compose, service_environment
from tests.deploy.conftest import ComposeStack, run_stack
from tests.deploy.helpers import REPO, free_port, http_status, settings_env_names, tail

NON_SETTINGS_ENV = {"SRSERVE_LOG_FORMAT"}  # read by srserve/logging_setup.py
APP_SERVICES = ("api", "worker", "worker-cpu")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"redis", "api", "worker", "worker-cpu", "prometheus", "grafana", "minio"}
    profiles = {name: s.get("profiles", []) for name, s in services.items()}
    assert profiles["redis"] == profiles["api"] == profiles["worker"] == []  # the default `up`
    assert profiles["worker-cpu"] == ["cpu"]
    assert profiles["prometheus"] == profiles["grafana"] == ["monitoring"]
    assert profiles["minio"] == ["s3"]


def test_redis_is_persistent_and_gates_the_app(compose: dict[str, Any]) -> None:
    redis_service = compose["services"]["redis"]
    assert re.match(r"^redis:7(\.|$)", redis_service["image"])
    command = redis_service["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") and v.split(":")[0] in compose["volumes"] for v in redis_service["volumes"])
    assert "redis-cli" in redis_service["healthcheck"]["test"]
    for name in APP_SERVICES:
        assert compose["services"][name]["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_worker_scales_and_reserves_a_gpu(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    for name in ("worker", "worker-cpu"):
        # `--scale worker=N` needs replicas that do not clash on names or host ports
        assert "container_name" not in compose["services"][name]
        assert "ports" not in compose["services"][name]
        assert compose["services"][name]["build"]["target"] == ("gpu" if name == "worker" else "cpu")
        grace = compose["services"][name]["stop_grace_period"]
        assert int(grace.rstrip("s")) >= 60, "time to finish the jobs in hand on `docker compose stop`"
    assert compose["services"]["api"]["ports"] == ["8000:8000"]


def test_results_volume_is_shared(compose: dict[str, Any]) -> None:
    mounts = {}
    for name in APP_SERVICES:
        service = compose["services"][name]
        blob_dir = service_environment(service)["SRSERVE_BLOB_DIR"]
        volume = next(v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == blob_dir)
        mounts[name] = volume
    assert len(set(mounts.values())) == 1, mounts
    assert next(iter(mounts.values())) in compose["volumes"]


def test_every_variable_is_a_setting_and_parses(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from service.settings import ServiceSettings
    from worker.settings import WorkerSettings

    for name, settings_cls in (("api", ServiceSettings), ("worker", WorkerSettings), ("worker-cpu", WorkerSettings)):
        service = compose["services"][name]
        env = dockerfile_env(REPO / service["build"]["dockerfile"], service["build"].get("target"))
        env.update(service_environment(service))
        known = settings_env_names(settings_cls) | NON_SETTINGS_ENV
        unknown = {k for k in env if k.startswith("SRSERVE_") or k == "REDIS_URL"} - known
        assert not unknown, f"{name}: variables no setting reads: {sorted(unknown)}"
        for key in [k for k in os.environ if k.startswith("SRSERVE_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings_cls()  # raises on a value the settings class refuses
        for key in env:
            monkeypatch.delenv(key)


def test_shell_overrides_reach_the_services() -> None:
    compose = load_compose({"SRSERVE_BLOB_BACKEND": "s3", "SRSERVE_S3_BUCKET": "prod-results"})
    env = service_environment(compose["services"]["api"])
    assert env["SRSERVE_BLOB_BACKEND"] == "s3" and env["SRSERVE_S3_BUCKET"] == "prod-results"
    assert service_environment(load_compose()["services"]["api"])["SRSERVE_BLOB_BACKEND"] == "fs"


# ---- monitoring configs mounted by the compose file ----


def _mounted(compose: dict[str, Any], service: str, target: str) -> Path:
    for spec in compose["services"][service]["volumes"]:
        source, dest = spec.split(":")[:2]
        if dest == target:
            assert source.startswith("./"), spec
            path = REPO / source[2:]
            assert path.exists(), f"{service} mounts {source}, which does not exist"
            return path
    raise AssertionError(f"{service} mounts nothing at {target}")


def test_prometheus_config_is_valid_and_finds_every_worker(compose: dict[str, Any]) -> None:
    config_path = _mounted(compose, "prometheus", "/etc/prometheus/prometheus.yml")
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install -y prometheus"
    result = subprocess.run([promtool, "check", "config", str(config_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(config_path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api_port = compose["services"]["api"]["command"][-1]
    assert jobs["srserve-api"]["static_configs"][0]["targets"] == [f"api:{api_port}"]
    (dns,) = jobs["srserve-worker"]["dns_sd_configs"]
    assert set(dns["names"]) == {"worker", "worker-cpu"} and dns["type"] == "A"
    for name in ("worker", "worker-cpu"):
        assert int(service_environment(compose["services"][name])["SRSERVE_METRICS_PORT"]) == dns["port"]


def test_grafana_provisioning_points_at_the_dashboard(compose: dict[str, Any]) -> None:
    provisioning = _mounted(compose, "grafana", "/etc/grafana/provisioning")
    dashboards_dir = _mounted(compose, "grafana", "/var/lib/grafana/dashboards")
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "srserve.yml").read_text())["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboards = list(dashboards_dir.glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
            assert panel["targets"], panel["title"]


# ---- the api and worker-cpu services, run for real ----


def test_compose_api_and_cpu_worker_serve_a_job(compose_stack: ComposeStack) -> None:
    stack = compose_stack
    api_url = stack.api_url
    assert stack.ready_before_worker == 503, "without a worker /readyz must not claim ready"
    assert http_status(f"{api_url}/readyz") == 200  # the fixture waited for this once the worker ran
    # the image's HEALTHCHECK command, pointed at the local port, agrees
    healthcheck = re.search(
        r"^HEALTHCHECK .*CMD (\[.*\])$",
        re.sub(r"\\\n\s*", " ", (REPO / "docker" / "Dockerfile.api").read_text()),
        re.MULTILINE,
    )
    argv = json.loads(healthcheck.group(1))
    argv = [a.replace("127.0.0.1:8000", api_url.removeprefix("http://")) for a in argv]
    assert argv[0] == "python"
    assert subprocess.run([sys.executable, *argv[1:]], timeout=30).returncode == 0

    image = Image.new("RGB", (24, 16))
    image.putdata([((x * 10) % 256, (y * 15) % 256, 128) for y in range(16) for x in range(24)])
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    with Client(api_url, timeout=30) as client:
        result = client.upscale(buf.getvalue(), model="bicubic", scale=2, timeout=120)
    assert result.job.status == "succeeded"
    assert Image.open(io.BytesIO(result.data)).size == (48, 32)
    # the result went through the shared volume the compose file mounts in both services
    blob_dir = Path(stack.api.env["SRSERVE_BLOB_DIR"])
    assert blob_dir == Path(stack.worker.env["SRSERVE_BLOB_DIR"])
    assert any(blob_dir.glob(f"jobs/{result.job.id}/result*")), sorted(map(str, blob_dir.rglob("*")))[:20]
    # and everything ran on the queue and Redis DB the compose environment names
    queue = stack.api.env["SRSERVE_QUEUE_NAME"]
    assert stack.redis.exists(f"rq:job:{result.job.id}")
    assert stack.redis.llen(f"rq:queue:{queue}") == 0
    # worker metrics answer on the port the compose file gives Prometheus
    assert http_status(stack.metrics_url) == 200, tail(stack.worker_log)


def test_worker_finishes_its_job_on_sigterm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """What the compose stop_grace_period and the k8s terminationGracePeriodSeconds rely on: SIGTERM
    (docker stop, pod deletion, scale-down) lets the job in hand finish, then the worker exits."""
    compose = load_compose({"SRSERVE_QUEUE_NAME": "srserve-drain-test"})
    ports = {8000: free_port(), 9100: free_port()}
    with run_stack(compose, tmp_path_factory.mktemp("drain"), ports, flush=False) as stack:
        big = Image.new("RGB", (400, 300), (120, 60, 30))  # ~2 s of CPU work
        buf = io.BytesIO()
        big.save(buf, format="PNG")
        with Client(stack.api_url, timeout=30) as client:
            job = client.submit(buf.getvalue(), model="bicubic", scale=4)
            deadline = time.monotonic() + 60
            while client.status(job.id).status != "running":
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.05)
            stack.worker_proc.send_signal(signal.SIGTERM)
            signalled_at = datetime.now(UTC)
            final = client.wait(job.id, timeout=120)
            assert final.status == "succeeded", final
            assert final.finished_at and final.finished_at > signalled_at, "the job was not in flight at SIGTERM"
            assert stack.worker_proc.wait(timeout=60) == 0, tail(stack.worker_log)
            assert Image.open(io.BytesIO(client.result(job.id))).size == (1600, 1200)
