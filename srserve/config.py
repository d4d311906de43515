"""Settings shared by the API and the worker processes (pydantic-settings, read from the environment).

Each process has exactly one settings class (`service.settings.ServiceSettings`,
`worker.settings.WorkerSettings`), both extending `CommonSettings`, read once per process through
their module's cached `get_settings()`. Every variable is `SRSERVE_<FIELD>` except `REDIS_URL`,
which keeps the name every Redis tool understands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"  # used by `api`/`worker` when REDIS_URL is unset


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SRSERVE_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "SRSERVE_REDIS_URL"),
        description="Redis for the queue and job state; unset: `serve` starts an embedded one",
    )
    queue_name: str = Field(default="srserve", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    blob_backend: Literal["fs", "s3"] = "fs"
    blob_dir: Path = Path("var/blobs")  # fs backend: shared by the API and the workers
    # s3 backend (srserve.blobstore_s3; boto3 needed): unset keys use boto3's usual credential chain
    s3_bucket: str = "srserve"
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_create_bucket: bool = False
    result_ttl_s: int = Field(default=86_400, ge=60, description="how long results stay downloadable")
    failure_ttl_s: int = Field(
        default=86_400, ge=60, description="how long failed/canceled jobs stay visible"
    )
    job_timeout_s: int = Field(default=600, ge=5, description="one job's wall-clock limit in the worker")
    max_input_pixels: int = Field(default=16_000_000, ge=1)
    max_output_pixels: int = Field(default=256_000_000, ge=1)
    # extra folders of model cards + weights, os.pathsep-separated (like PATH)
    models_dir: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    @field_validator("models_dir", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(p) for p in value.split(os.pathsep) if p.strip()]
        return value

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL
