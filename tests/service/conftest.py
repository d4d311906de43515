"""API apps served in-process (uvicorn in a thread, real HTTP) on a queue no worker listens to: for
validation, queued-job cancellation, readiness without workers and Redis outages."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from service.main import create_app
from service.settings import ServiceSettings
from tests.served_app import AppClient, served


@pytest.fixture
def make_client(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., AppClient]]:
    stack = ExitStack()

    def make(**overrides: object) -> AppClient:
        values: dict[str, object] = {
            "redis_url": redis_url,
            "queue_name": f"offline-{uuid.uuid4().hex[:10]}",
            "blob_dir": tmp_path / "blobs",
        }
        values.update(overrides)
        return stack.enter_context(served(create_app(ServiceSettings(**values))))  # type: ignore[arg-type]

    with stack:
        yield make
