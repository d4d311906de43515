"""Settings of a worker process (read once: `get_settings()`)."""

from __future__ import annotations

import functools
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from srserve.config import CommonSettings


class WorkerSettings(CommonSettings):
    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|cuda|cuda:\d+|mps)$",
        description="auto = cuda when available, else cpu",
    )
    worker_name: str | None = Field(default=None, description="RQ worker name; default host-pid-random")
    metrics_port: int | None = Field(default=None, ge=1, le=65535, description="Prometheus endpoint port")
    metrics_host: str = "0.0.0.0"
    # models to load at start, `name:scale` comma-separated (e.g. `bicubic:4,fsrcnn_x4:4`)
    preload_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # RQ worker key TTL: /readyz stops counting a killed worker after at most ~worker_ttl_s + 60 s
    worker_ttl_s: int = Field(default=30, ge=15)
    maintenance_interval_s: int = Field(
        default=60, ge=5, description="registry + blob cleanup period; bounds recovery of a killed worker's jobs"
    )
    # reference/LR-consistency metrics hold several float64 copies of the output: above this the
    # job still succeeds, the metrics are skipped and a note says so
    metrics_max_output_pixels: int = Field(default=8_388_608, ge=1)
    # how old an orphaned job folder must be before the sweep deletes it (uploads in flight)
    orphan_min_age_s: int = Field(default=3600, ge=0)
    # ---- the batching engine (worker/engine.py) ----
    jobs_in_flight: int = Field(
        default=8, ge=1, le=256, description="jobs one worker holds at once; 1 turns cross-job batching off"
    )
    tile_size: int = Field(
        default=0,
        ge=0,
        description="largest LR tile side; 0 = auto (256 on CPU, 768 on CUDA; tiles are sized to the image)",
    )
    min_tile: int = Field(default=32, ge=8, description="smallest tile the out-of-memory back-off tries")
    max_batch_size: int = Field(
        default=0, ge=0, le=1024, description="tiles per device batch (all models); 0 = auto (64 on CUDA, 1 on CPU)"
    )
    max_batch_pixels: int = Field(
        default=-1,
        ge=-1,
        description="a batch also stops at this many LR pixels, so small tiles batch many and large ones few; "
        "0 = no limit; -1 = auto (16 tiles of 384², 2359296, on CUDA; none on CPU)",
    )
    max_queue_delay_ms: float = Field(
        default=5.0, ge=0.0, description="longest a tile waits for its batch to fill (Triton's max_queue_delay)"
    )
    # per-model overrides as JSON: {"edsr_baseline_x4": {"max_batch_size": 8, "max_queue_delay_s": 0.01}}
    batch_policies: dict[str, dict[str, float]] = Field(default_factory=dict)
    bucket_batches: str = Field(
        default="auto",
        pattern=r"^(auto|on|off)$",
        description="pad batches to powers of two so cuDNN autotunes each tile shape once; auto: on CUDA",
    )
    pipeline_depth: int = Field(
        default=-1,
        ge=-1,
        le=16,
        description="batches in flight between launch and stitching, each with its own page-locked host "
        "buffers; 0 = stitch on the device thread; -1 = auto (3 on CUDA, 0 on CPU)",
    )
    half_precision: str = Field(
        default="auto",
        pattern=r"^(auto|off)$",
        description="auto: bf16 where the model card says safe on this device (CUDA; a CPU with native bf16 "
        "where bf16 measures faster for the model); off: fp32 always",
    )
    memory_budget_bytes: int = Field(
        default=0, ge=0, description="simulated device memory for the OOM back-off (tests, CPU); 0 = none"
    )
    torch_threads: int = Field(
        default=0, ge=0, description="intra-op CPU threads of the device thread; 0 = half the cores, 1-4"
    )
    execution_ttl_s: int = Field(
        default=30, ge=5, description="heartbeat TTL of each held job: a killed worker's jobs are re-run after it"
    )

    @field_validator("preload_models", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


@functools.cache
def get_settings() -> WorkerSettings:
    return WorkerSettings()
