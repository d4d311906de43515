"""Settings of an API process (read once: `get_settings()`)."""

from __future__ import annotations

import functools
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from srserve.config import CommonSettings


class ServiceSettings(CommonSettings):
    host: str = Field(default="127.0.0.1", description="bind address of `srserve api`/`serve`")
    port: int = Field(default=8000, ge=1, le=65535)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, description="whole request body")
    max_frames: int = Field(default=16, ge=1, description="frames of an animated/burst upload")
    # browser origins allowed by CORS, comma-separated; empty = CORS off
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_base_url: str | None = Field(
        default=None,
        description="prefix of the links in job JSON (e.g. https://sr.example.com); unset: relative",
    )
    job_retries: int = Field(default=2, ge=0, le=10, description="RQ retries after a transient failure")
    validation_concurrency: int = Field(default=2, ge=1, description="uploads fully decoded at once")
    redis_timeout_s: float = Field(default=5.0, gt=0)
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After of a 503 while Redis is down")
    max_wait_s: float = Field(
        default=30.0, ge=0, description="longest long poll, `GET /v1/jobs/{id}?wait=S`; 0 turns long polling off"
    )
    # ---- hardening (service/guard.py, auth.py, ratelimit.py, backpressure.py, idempotency.py) ----
    auth_required: bool = Field(default=False, description="every /v1 request needs `Authorization: Bearer`")
    metrics_require_auth: bool = Field(default=False, description="/metrics needs an API key too")
    rate_limit_per_s: float = Field(default=10.0, ge=0, description="per-key request rate; 0 = unlimited")
    rate_limit_burst: int = Field(default=20, ge=1, description="per-key token bucket size")
    daily_job_quota: int = Field(default=0, ge=0, description="jobs per key per UTC day; 0 = unlimited")
    max_queue_depth: int = Field(default=1000, ge=0, description="queued jobs above which POST answers 429")
    idempotency_ttl_s: int = Field(default=86_400, ge=60, description="how long an Idempotency-Key is remembered")
    # multipart parser limits (Starlette's request.form): checked while parsing, before any decode
    max_form_files: int = Field(default=32, ge=1, description="file parts in one request")
    max_form_fields: int = Field(default=16, ge=1, description="non-file fields in one request")
    max_form_field_bytes: int = Field(default=65_536, ge=64, description="size of one non-file field")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None


@functools.cache
def get_settings() -> ServiceSettings:
    return ServiceSettings()
