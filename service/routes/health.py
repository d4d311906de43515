"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import redis
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rq.worker import Worker

from service.deps import ServicesDep
from service.errors import ApiError, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses(503))
def readyz(services: ServicesDep) -> dict[str, object]:
    """Ready to take jobs: Redis answers and at least one live worker listens on our queue."""
    queue = services.queue
    try:
        services.redis.ping()
        workers = Worker.all(queue=queue)
    except redis.RedisError as exc:
        raise ApiError(
            503,
            "not_ready",
            "Redis is unreachable",
            {"redis": "unreachable", "queue": queue.name},
            {"Retry-After": str(services.settings.retry_after_s)},
        ) from exc
    if not workers:
        raise ApiError(
            503,
            "not_ready",
            f"no live worker is listening on queue {queue.name!r}",
            {"redis": "ok", "workers": 0, "queue": queue.name},
            {"Retry-After": str(services.settings.retry_after_s)},
        )
    return {"status": "ready", "redis": "ok", "workers": len(workers), "queue": queue.name}


@router.get("/metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
