"""In-process API apps (FastAPI TestClient) on a queue no worker listens to: for validation,
queued-job cancellation, readiness without workers and Redis outages."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import ServiceSettings


@pytest.fixture
def make_client(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        values: dict[str, object] = {
            "redis_url": redis_url,
            "queue_name": f"offline-{uuid.uuid4().hex[:10]}",
            "blob_dir": tmp_path / "blobs",
        }
        values.update(overrides)
        client = TestClient(create_app(ServiceSettings(**values)), raise_server_exceptions=False)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
