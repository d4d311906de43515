"""srserve.client against the real service (worker + uvicorn processes from the live_service fixture)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srserve.client import APIError, AsyncClient, Client, JobFailedError
from srserve.schemas import JobView, ModelView
from tests.conftest import LiveService


def _lr_hr(data_dir: Path, scale: int = 4, n: int = 1) -> tuple[Path, Path]:
    folder = data_dir / "eval" / "Set5" / f"x{scale}"
    return folder / f"img_{n:03d}_LR.png", folder / f"img_{n:03d}_HR.png"


def test_upscale_round_trip_with_reference(live: LiveService, data_dir: Path) -> None:
    lr, hr = _lr_hr(data_dir)
    seen: list[str] = []
    with Client(live.base_url) as c:
        out = c.upscale(lr, model="bicubic", scale=4, reference=hr, timeout=120,
                        on_progress=lambda j: seen.append(j.status))  # fmt: skip
    assert seen[-1] == "succeeded"
    assert isinstance(out.job, JobView)
    assert out.content_type == "image/png"
    img = Image.open(io.BytesIO(out.data))
    w, h = Image.open(lr).size
    assert img.size == (4 * w, 4 * h) == out.size
    m = out.metrics
    assert m is not None and m.psnr_y is not None and m.bicubic_psnr_y is not None
    # the bicubic model *is* the bicubic baseline: its PSNR equals the baseline's, and is sane for Set5 x4
    assert m.psnr_y == pytest.approx(m.bicubic_psnr_y, abs=0.05)
    assert 25.0 < m.psnr_y < 40.0
    assert m.lr_consistency_psnr > 30.0
    assert m.timings.total_s is not None and m.timings.total_s > 0


def test_bytes_input_and_webp_async(live: LiveService, data_dir: Path) -> None:
    lr, _ = _lr_hr(data_dir, scale=2, n=3)

    async def go() -> tuple[bytes, str, JobView]:
        async with AsyncClient(live.base_url) as c:
            out = await c.upscale(lr.read_bytes(), model="bicubic", scale=2, format="webp", timeout=120)
            again = await c.result(out.job)  # the result stays downloadable
            assert again == out.data
            return out.data, out.content_type, await c.status(out.job.id)

    data, ctype, job = asyncio.run(go())
    assert ctype == "image/webp"
    assert job.status == "succeeded" and job.result is not None and job.result.format == "webp"
    img = Image.open(io.BytesIO(data))
    assert img.format == "WEBP"
    assert img.size == tuple(2 * s for s in Image.open(lr).size)


def test_models_are_typed(live: LiveService) -> None:
    with Client(live.base_url) as c:
        models = c.models()
    assert models and all(isinstance(m, ModelView) for m in models)
    bicubic = next(m for m in models if m.name == "bicubic")
    assert 4 in bicubic.scales and bicubic.params == 0


def test_unknown_model_is_a_typed_error(live: LiveService, data_dir: Path) -> None:
    lr, _ = _lr_hr(data_dir)
    with Client(live.base_url) as c, pytest.raises(APIError) as info:
        c.submit(lr, model="no_such_model", scale=4)
    err = info.value
    assert err.status_code == 422
    assert err.code == "unknown_model"
    assert "bicubic" in str(err.detail)


def test_not_an_image_and_unknown_job(live: LiveService) -> None:
    with Client(live.base_url) as c:
        with pytest.raises(APIError) as bad:
            c.submit(b"plain text, not pixels", scale=2)
        assert (bad.value.status_code, bad.value.code) == (422, "not_an_image")
        with pytest.raises(APIError) as missing:
            c.status("A" * 22)
        assert missing.value.status_code == 404


def test_cancel_queued_job(live: LiveService) -> None:
    # two large jobs keep the single worker busy, so the third is still queued when canceled
    big = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (900, 900, 3), dtype=np.uint8)).save(big, "PNG", compress_level=1)
    with Client(live.base_url) as c:
        blockers = [c.submit(big.getvalue(), model="bicubic", scale=4) for _ in range(2)]
        target = c.submit(big.getvalue(), model="bicubic", scale=4)
        canceled = c.cancel(target.id)
        for b in blockers:  # free the worker for the other tests
            c.cancel(b.id)
        assert canceled.id == target.id
        final = c.wait(target.id, timeout=60)
        assert final.status == "canceled"
        with pytest.raises(APIError) as no_result:
            c.result(target.id)
        assert no_result.value.status_code in (404, 409)


def test_upscale_raises_typed_error_when_job_is_canceled(live: LiveService) -> None:
    # seconds of work for the CPU worker (a deep model on ~0.8 MP), so the cancel always lands while the job
    # runs: a bicubic job of this size now ends within the client's first 1 s status poll
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)).save(big, "PNG")
    canceled: list[str] = []

    def cancel_once(job: JobView) -> None:  # cancel from inside the polling loop, on the first status
        if not canceled:
            canceled.append(job.id)
            c.cancel(job.id)

    with Client(live.base_url) as c, pytest.raises(JobFailedError) as info:
        c.upscale(big.getvalue(), model="edsr_baseline_x4", scale=4, timeout=60, on_progress=cancel_once)
    assert info.value.job.id == canceled[0]
    assert info.value.job.status == "canceled"
