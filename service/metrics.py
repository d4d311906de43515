"""The API's Prometheus series. One registry per app (tests build several apps in one process);
queue depth and worker count are read from Redis at scrape time, not tracked."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from rq import Queue
from rq.worker import Worker

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class QueueCollector(Collector):
    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def describe(self) -> Iterator[GaugeMetricFamily]:  # no Redis round-trip at registration
        return iter(())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("srserve_redis_up", "1 if Redis answered this scrape")
        depth = GaugeMetricFamily("srserve_queue_depth", "Jobs waiting in the queue", labels=["queue"])
        running = GaugeMetricFamily("srserve_jobs_running", "Jobs being executed", labels=["queue"])
        workers = GaugeMetricFamily(
            "srserve_workers", "Live workers listening on the queue", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "srserve_queue_oldest_job_age_seconds", "Age of the job waiting longest (0 when empty)", labels=["queue"]
        )
        name = self.queue.name
        try:
            oldest.add_metric([name], self._oldest_age())
            depth.add_metric([name], self.queue.count)
            running.add_metric([name], self.queue.started_job_registry.count)
            workers.add_metric([name], len(Worker.all(queue=self.queue)))
            up.add_metric([], 1)
        except redis.RedisError as exc:
            log.warning("metrics scrape: Redis unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        yield from (up, depth, running, workers, oldest)


    def _oldest_age(self) -> float:
        # the queue is a Redis list in FIFO order: its head is the oldest waiting job
        head = self.queue.connection.lindex(self.queue.key, 0)
        if head is None:
            return 0.0
        enqueued = self.queue.connection.hget(f"rq:job:{head.decode()}", "enqueued_at")
        if not enqueued:
            return 0.0
        from rq.utils import utcparse

        age = datetime.now(UTC) - utcparse(enqueued.decode()).replace(tzinfo=UTC)
        return max(0.0, age.total_seconds())


class ServiceMetrics:
    def __init__(self, queue: Queue) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "srserve_http_requests_total",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "srserve_http_request_duration_seconds",
            "HTTP request latency by route and method",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.jobs_submitted = Counter(
            "srserve_jobs_submitted_total", "Jobs accepted, by model", ["model"], registry=self.registry
        )
        self.uploads_rejected = Counter(
            "srserve_uploads_rejected_total",
            "Uploads refused at validation, by error code",
            ["code"],
            registry=self.registry,
        )
        self.jobs_canceled = Counter(
            "srserve_jobs_cancel_requests_total",
            "DELETE /v1/jobs/{id} that canceled or stopped a job",
            registry=self.registry,
        )
        self.long_polls = Gauge(
            "srserve_long_polls_waiting", "GET /v1/jobs/{id}?wait requests held open now", registry=self.registry
        )
        self.registry.register(QueueCollector(queue))
