"""The worker's own Prometheus series, served on `SRSERVE_METRICS_PORT` when set."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from worker.engine import EngineMetrics

log = logging.getLogger(__name__)

_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry or REGISTRY
        self.processed = Counter(
            "srserve_worker_jobs_processed_total", "Jobs that succeeded, by model", ["model"], registry=reg
        )
        self.failed = Counter(
            "srserve_worker_jobs_failed_total",
            "Jobs that failed or were canceled, by model and code",
            ["model", "code"],
            registry=reg,
        )
        self.inference = Histogram(
            "srserve_worker_job_inference_seconds",
            "Inference time of one whole job",
            ["model"],
            buckets=_SECONDS_BUCKETS,
            registry=reg,
        )
        self.duration = Histogram(
            "srserve_job_duration_seconds",
            "End to end: submitted to result stored, per model",
            ["model"],
            buckets=_SECONDS_BUCKETS,
            registry=reg,
        )
        self.gpu_utilization = Gauge(
            "srserve_gpu_utilization_ratio", "GPU busy fraction (NVML), CUDA workers only", ["device"], registry=reg
        )
        self.stage = Histogram(
            "srserve_worker_stage_seconds",
            "Time per pipeline stage",
            ["stage"],
            buckets=_SECONDS_BUCKETS,
            registry=reg,
        )


@functools.cache
def get_worker_metrics() -> WorkerMetrics:
    """The process-wide series on the default registry (registering twice would be an error)."""
    return WorkerMetrics()


@functools.cache
def get_engine_metrics() -> EngineMetrics:
    from worker.engine import EngineMetrics

    return EngineMetrics()


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    start_http_server(port, addr=host)
    log.info("worker metrics on http://%s:%d/metrics", host, port)
