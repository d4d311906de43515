"""The public JSON shapes of the API, shared by the service (response models) and the Python client
(typed results), so neither side re-declares them by hand. Pure pydantic: no torch, no FastAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
OutputFormat = Literal["png", "webp", "jpeg"]


class ErrorInfo(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. not_an_image, unknown_model")
    message: str


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx answer."""

    error: ErrorInfo
    detail: Any | None = Field(default=None, description="extra context, e.g. the list of valid names")


class ResultInfo(BaseModel):
    url: str
    width: int
    height: int
    format: OutputFormat
    bytes: int
    content_type: str


class Timings(BaseModel):
    queue_wait_s: float | None = None
    decode_s: float | None = None
    inference_s: float | None = None
    encode_s: float | None = None
    metrics_s: float | None = None
    total_s: float | None = None


class FrameReport(BaseModel):
    """Per-frame registration outcome of a burst job."""

    index: int
    shift_x: float = Field(description="estimated shift vs the reference frame, in LR pixels")
    shift_y: float
    weight: float = Field(description="share of the fusion this frame got (0 = rejected)")
    rejected: bool = False
    reason: str | None = None
    confidence: float | None = Field(default=None, description="correlation with the reference after alignment")
    gain: float | None = Field(default=None, description="exposure gain applied to match the reference")


class JobMetrics(BaseModel):
    psnr_y: float | None = Field(default=None, description="PSNR (dB, Y channel) vs the reference")
    ssim_y: float | None = Field(default=None, description="SSIM (Y channel) vs the reference")
    bicubic_psnr_y: float | None = Field(default=None, description="the same PSNR for plain bicubic")
    bicubic_ssim_y: float | None = None
    lr_consistency_psnr: float | None = Field(
        default=None,
        description="PSNR (dB) of the output downscaled back with bicubic against the input; "
        "null only when the output was too large to measure (see notes)",
    )
    timings: Timings = Field(default_factory=Timings)
    device: str = ""
    model: str = ""
    precision: str = Field(
        default="fp32", description="the network's arithmetic: fp32, or bf16 where the model's card says it is "
        "safe on this device (Set5 PSNR within 0.02 dB) and the worker's SRSERVE_HALF_PRECISION allows it"
    )
    weights_sha256: str | None = None
    batch_size: int | None = Field(default=None, description="largest batch this job's tiles ran in")
    tiles: int | None = None
    frames: list[FrameReport] | None = None
    notes: list[str] = Field(default_factory=list, description="conversions applied to input or output")


class JobView(BaseModel):
    id: str
    status: JobStatus
    model: str
    scale: int
    kind: Literal["single", "burst"] = "single"
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: float = Field(ge=0.0, le=1.0)
    queue_position: int | None = None
    input: dict[str, int] | None = Field(default=None, description="width, height, frames of the input")
    result: ResultInfo | None = None
    metrics: JobMetrics | None = None
    error: ErrorInfo | None = None
    links: dict[str, str] = Field(default_factory=dict)


class ModelQuality(BaseModel):
    dataset: str
    scale: int
    psnr_y: float
    ssim_y: float
    paper_psnr_y: float | None = None


class ModelView(BaseModel):
    name: str
    family: str
    architecture: str
    kind: Literal["single", "burst"]
    scales: list[int]
    channels: str
    params: int
    flops_per_output_pixel: int
    weights_sha256: str | None
    min_frames: int
    max_frames: int
    default_for_scales: list[int]
    quality: list[ModelQuality]
    bf16_on_cuda: bool = Field(description="GPU workers serve it in bf16 (Set5 PSNR within 0.02 dB of fp32)")
    cpu_bf16_psnr_delta: float | None = Field(
        default=None, description="Set5 PSNR change (dB) of bf16 on the CPU path; under 0.02, CPU workers with "
        "native bf16 serve it in bf16 where that is faster; null = not measured (fp32)"
    )
    source: str
    licence: str
    paper: str
    notes: str


class ModelList(BaseModel):
    models: list[ModelView]
