from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import ServiceSettings
from worker.settings import WorkerSettings


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example:6380/2")
    monkeypatch.setenv("SRSERVE_QUEUE_NAME", "q")
    monkeypatch.setenv("SRSERVE_MODELS_DIR", "/a:/b")
    monkeypatch.setenv("SRSERVE_CORS_ORIGINS", "http://x.test, http://y.test")
    monkeypatch.setenv("SRSERVE_MAX_UPLOAD_BYTES", "2048")
    monkeypatch.setenv("SRSERVE_PUBLIC_BASE_URL", "https://sr.example.com/")
    s = ServiceSettings()
    assert s.redis_url == "redis://example:6380/2" and s.effective_redis_url == s.redis_url
    assert s.queue_name == "q"
    assert s.models_dir == [Path("/a"), Path("/b")]
    assert s.cors_origins == ["http://x.test", "http://y.test"]
    assert s.max_upload_bytes == 2048
    assert s.public_base_url == "https://sr.example.com"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        "REDIS_URL",
        "SRSERVE_REDIS_URL",
        "SRSERVE_MAX_UPLOAD_BYTES",
        "SRSERVE_MAX_INPUT_PIXELS",
        "SRSERVE_DEVICE",
        "SRSERVE_MAX_OUTPUT_PIXELS",
        "SRSERVE_MAX_FRAMES",
        "SRSERVE_CORS_ORIGINS",
    ]:
        monkeypatch.delenv(name, raising=False)
    s = ServiceSettings()
    assert s.redis_url is None and s.effective_redis_url.startswith("redis://127.0.0.1:6379")
    assert s.max_upload_bytes == 50 * 1024 * 1024
    assert s.max_input_pixels == 16_000_000 and s.max_output_pixels == 256_000_000
    assert s.max_frames == 16 and s.cors_origins == []
    w = WorkerSettings()
    assert w.device == "auto"


def test_worker_device_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRSERVE_DEVICE", "cuda:1")
    assert WorkerSettings().device == "cuda:1"
    monkeypatch.setenv("SRSERVE_DEVICE", "gpu")
    with pytest.raises(ValidationError):
        WorkerSettings()
    monkeypatch.setenv("SRSERVE_DEVICE", "cpu")
    monkeypatch.setenv("SRSERVE_PRELOAD_MODELS", "bicubic:4, bicubic:2")
    assert WorkerSettings().preload_models == ["bicubic:4", "bicubic:2"]
