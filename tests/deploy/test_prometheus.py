"""A real Prometheus server (Debian package `prometheus`) runs the repo's scrape config
(docker/prometheus/prometheus.yml) with its targets pointed at the locally running compose `api` and
`worker-cpu` services; jobs go through the API and their counters are read back through
Prometheus's HTTP query API. Every query of the Grafana dashboard is evaluated by the same server."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from PIL import Image

from srserve.client import Client
from tests.deploy.compose import load_compose
from tests.deploy.conftest import ComposeStack
from tests.deploy.helpers import REPO, child_process, free_port, http_status, wait_until

PROM_CONFIG = REPO / "docker" / "prometheus" / "prometheus.yml"
DASHBOARDS = sorted((REPO / "docker" / "grafana" / "dashboards").glob("*.json"))
# Grafana's own variables, as Grafana would expand them for a short time range.
GRAFANA_VARS = {"$__rate_interval": "15s", "$__interval": "1s", "$__range": "5m", "$model": ".*"}


def local_scrape_config(stack: ComposeStack, prometheus_port: int) -> dict[str, Any]:
    """The repo's config with a 1 s scrape interval and every target rewritten to the local port
    of the compose service it names (workers, found by DNS in compose, become static targets)."""
    services = load_compose()["services"]
    ports = stack.api.ports  # container port -> local port, shared by both local services
    config = yaml.safe_load(PROM_CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    for job in config["scrape_configs"]:
        job["scrape_interval"] = "1s"
        targets: list[str] = []
        for static in job.pop("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                if host in services:
                    targets.append(f"127.0.0.1:{ports[int(port)]}")
                elif host == "localhost" and int(port) == 9090:  # Prometheus itself
                    targets.append(f"127.0.0.1:{prometheus_port}")
                else:
                    raise AssertionError(f"{job['job_name']}: target {target} is no compose service")
        for dns in job.pop("dns_sd_configs", []):
            assert set(dns["names"]) <= set(services), dns["names"]
            # here one replica of one of the named services runs: the local worker-cpu
            assert stack.worker.name in dns["names"]
            targets.append(f"127.0.0.1:{ports[dns['port']]}")
        job["static_configs"] = [{"targets": targets}]
    return config


@pytest.fixture(scope="module")
def prometheus(compose_stack: ComposeStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe, promtool = shutil.which("prometheus"), shutil.which("promtool")
    assert exe and promtool, "Prometheus missing: apt-get install -y prometheus"
    root = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config_path = root / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(local_scrape_config(compose_stack, port)))
    check = subprocess.run([promtool, "check", "config", str(config_path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    argv = [
        exe,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    log = root / "prometheus.log"
    with child_process(argv, log, cwd=root) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_status(f"{url}/-/ready") == 200, 60, "Prometheus ready", proc, log)
        yield url


def api_get(base: str, path: str, **params: str) -> dict[str, Any]:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{base}{path}?{query}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def instant(base: str, expr: str) -> list[dict[str, Any]]:
    return api_get(base, "/api/v1/query", query=expr)["result"]


def scalar(base: str, expr: str) -> float | None:
    result = instant(base, expr)
    return float(result[0]["value"][1]) if result else None


def wait_for_value(base: str, expr: str, predicate: Any, timeout: float = 30.0) -> float | None:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = scalar(base, expr)
        if value is not None and predicate(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"{expr} = {value} after {timeout:.0f}s")


def png(seed: int) -> bytes:
    image = Image.new("RGB", (20, 12), (seed * 40 % 256, 90, 200))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_prometheus_scrapes_api_and_worker_and_counts_jobs(prometheus: str, compose_stack: ComposeStack) -> None:
    wait_for_value(prometheus, 'up{job="srserve-api"}', lambda v: v == 1)
    wait_for_value(prometheus, 'up{job="srserve-worker"}', lambda v: v == 1)
    time.sleep(2.5)  # a couple of scrapes, so "before" is the counters' current value
    processed = 'sum(srserve_worker_jobs_processed_total{job="srserve-worker", model="bicubic"})'
    submitted = 'sum(srserve_jobs_submitted_total{job="srserve-api", model="bicubic"})'
    before_processed = scalar(prometheus, processed) or 0.0
    before_submitted = scalar(prometheus, submitted) or 0.0
    with Client(compose_stack.api_url, timeout=30) as client:
        for seed in range(3):
            result = client.upscale(png(seed), model="bicubic", scale=2, timeout=120)
            assert result.job.status == "succeeded"
    wait_for_value(prometheus, processed, lambda v: v == before_processed + 3)
    wait_for_value(prometheus, submitted, lambda v: v == before_submitted + 3)
    # the queue gauge is collected from Redis at scrape time: empty again once the jobs are done
    wait_for_value(prometheus, 'sum(srserve_queue_depth{job="srserve-api"})', lambda v: v == 0)
    wait_for_value(prometheus, 'sum(srserve_workers{job="srserve-api"})', lambda v: v >= 1)


@pytest.mark.parametrize("target", ["api", "worker"])
def test_metrics_follow_prometheus_conventions(compose_stack: ComposeStack, target: str) -> None:
    url = f"{compose_stack.api_url}/metrics" if target == "api" else compose_stack.metrics_url
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read()
    names = set(re.findall(rb"^# TYPE (srserve_\w+)", text, re.MULTILINE))
    assert names, f"no srserve_ series on the {target}"
    result = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"], input=text,
                            capture_output=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in GRAFANA_VARS.items():
                    expr = expr.replace(var, value)
                assert "$" not in expr, f"{panel['title']}: unknown Grafana variable in {expr}"
                queries.append((f"{path.stem}: {panel['title']}", expr))
    return queries


def test_dashboard_queries_run_and_use_exported_metrics(prometheus: str) -> None:
    wait_for_value(prometheus, 'up{job="srserve-worker"}', lambda v: v == 1)
    # metric families both processes declare (HELP/TYPE), whether or not they have samples yet
    metadata = api_get(prometheus, "/api/v1/metadata")
    queries = dashboard_queries()
    assert len(queries) >= 10
    missing = set()
    for title, expr in queries:
        instant(prometheus, expr)  # raises unless Prometheus accepts the expression
        for name in set(re.findall(r"\b(srserve_\w+)", expr)):
            base = re.sub(r"_(bucket|sum|count|total)$", "", name)  # OpenMetrics family names
            if name not in metadata and base not in metadata:
                missing.add(f"{name} ({title})")
    assert not missing, "the dashboard uses metrics nothing exports: " + ", ".join(sorted(missing))


def test_dashboard_counter_panels_show_the_jobs(prometheus: str, compose_stack: ComposeStack) -> None:
    # Run one job, then the dashboard's own "Jobs/s by model" query must see bicubic traffic.
    with Client(compose_stack.api_url, timeout=30) as client:
        assert client.upscale(png(7), model="bicubic", scale=2, timeout=120).job.status == "succeeded"
    title, expr = next(q for q in dashboard_queries() if q[0].endswith("Jobs/s by model") and "processed" in q[1])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        series = {r["metric"].get("model"): float(r["value"][1]) for r in instant(prometheus, expr)}
        if series.get("bicubic", 0) > 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{title}: {expr} shows no bicubic jobs: {series}")
