"""FastAPI dependencies as `Annotated` aliases. Everything lives on `app.state.services`, built once
by `create_app`; tests override `get_services` instead of patching globals."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Request
from rq import Queue

from model_store.card import Catalog
from service.idempotency import IdempotencyStore
from service.jobstore import JobStore
from service.metrics import ServiceMetrics
from service.settings import ServiceSettings
from service.watch import JobWatcher
from srserve.blobstore import BlobStore


@dataclass
class Services:
    settings: ServiceSettings
    redis: redis.Redis
    queue: Queue
    store: BlobStore
    catalog: Catalog
    jobs: JobStore
    metrics: ServiceMetrics
    decode_slots: threading.BoundedSemaphore
    idempotency: IdempotencyStore
    watcher: JobWatcher


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
