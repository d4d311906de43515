"""The FastAPI app. `create_app(settings)` wires settings, Redis, the RQ queue, the blob store, the
model catalog and metrics once; `uvicorn --factory service.main:create_app` works too.

This package never imports torch (checked by tests/service/test_no_torch.py): it validates, stores,
enqueues and reports; the worker does the math.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import redis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from rq import Queue
from rq.serializers import JSONSerializer

from model_store.card import Catalog
from service.deps import Services
from service.errors import error_responses, install_error_handlers
from service.guard import GuardMiddleware
from service.idempotency import IdempotencyStore
from service.jobstore import JobStore
from service.metrics import ServiceMetrics
from service.middleware import BodySizeLimitMiddleware, MetricsMiddleware
from service.routes import health, jobs, models, upscale
from service.settings import ServiceSettings, get_settings
from service.watch import JobWatcher
from srserve.blobstore import make_blob_store

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return version("srserve")
    except PackageNotFoundError:  # running from a checkout that was never pip-installed
        return "0+unknown"


def build_services(settings: ServiceSettings) -> Services:
    # lazy connection; short timeouts so a Redis outage becomes a quick 503, not a hung request
    connection = redis.Redis.from_url(
        settings.effective_redis_url,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        health_check_interval=30,
    )
    queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    store = make_blob_store(settings)
    catalog = Catalog.load(settings.models_dir)
    return Services(
        settings=settings,
        redis=connection,
        queue=queue,
        store=store,
        catalog=catalog,
        jobs=JobStore(settings, queue, store),
        metrics=ServiceMetrics(queue),
        decode_slots=threading.BoundedSemaphore(settings.validation_concurrency),
        idempotency=IdempotencyStore(connection, settings.idempotency_ttl_s),
        watcher=JobWatcher(connection),
    )


STATIC_DIR = Path(__file__).resolve().parent / "static"


async def _index() -> FileResponse:
    """The web page: upload, watch progress, compare with bicubic, read the metrics."""
    return FileResponse(STATIC_DIR / "index.html")


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "API up: queue=%s blobs=%s models=%s",
            settings.queue_name,
            settings.blob_dir,
            services.catalog.names(),
        )
        yield
        services.watcher.close()
        services.redis.close()

    app = FastAPI(
        title="srserve",
        version=_version(),
        summary="Image super-resolution as a service, with per-job quality metrics",
        lifespan=lifespan,
        # multipart parser limits: too many parts or an oversized field fail while parsing (413)
        form_limits={
            "max_files": settings.max_form_files,
            "max_fields": settings.max_form_fields,
            "max_part_size": settings.max_form_field_bytes,
        },
    )
    app.state.settings = settings
    app.state.services = services
    services.metrics.long_polls.set_function(lambda: services.watcher.waiting)
    install_error_handlers(app)
    for router in (upscale.router, jobs.router, models.router):
        # the gate (service/guard.py) can refuse any /v1 request: missing/bad key, rate, queue full
        app.include_router(router, responses=error_responses(401, 429, 503))
    app.include_router(health.router)
    # the try-it page: plain files, no build step, no CDN; public even when API keys are on
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_api_route("/", _index, include_in_schema=False)
    # added innermost first: metrics see every answer, including the body limit's 413; the gate
    # sits inside CORS so preflights and the CORS headers of its 401/429 answers still work
    app.add_middleware(GuardMiddleware, services=services)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],
            expose_headers=["Location"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    return app
