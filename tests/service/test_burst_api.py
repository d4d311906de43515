"""Burst jobs through the real service: `frames` instead of `image`, validation naming the offending
frame, and an end-to-end job whose JSON reports per-frame shifts and weights plus quality metrics."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from model_store.burst.synth import BurstConfig, synth_burst_np
from srserve.imaging import load_rgb_uint8
from tests.conftest import LiveService
from tests.service import images
from tests.service.test_api_jobs import watch


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _post(live: LiveService, frames: list[bytes], reference: bytes | None = None, **form: str):  # type: ignore[no-untyped-def]
    files = [("frames", (f"f{i}.png", f, "image/png")) for i, f in enumerate(frames)]
    if reference is not None:
        files.append(("reference", ("hr.png", reference, "image/png")))
    with live.client() as c:
        return c.post("/v1/upscale", files=files, data=form)


def test_burst_job_end_to_end_reports_shifts_and_metrics(live: LiveService, data_dir: Path) -> None:
    hr = load_rgb_uint8(str(data_dir / "eval" / "Set14" / "x2" / "img_003_HR.png"))[:96, :128]
    frames, shifts = synth_burst_np(hr, BurstConfig(frames=4, scale=2, max_shift=1.5), seed=3)
    frames_u8 = [np.clip(np.rint(f * 255), 0, 255).astype(np.uint8) for f in frames]
    resp = _post(live, [_png(f) for f in frames_u8], reference=_png(hr), scale="2", model="shift_add")
    assert resp.status_code == 202, resp.text
    created = resp.json()
    assert created["kind"] == "burst" and created["model"] == "shift_add"
    assert created["input"]["frames"] == 4
    _, job = watch(live, created["id"], timeout=120)
    assert job["status"] == "succeeded", job
    assert (job["result"]["width"], job["result"]["height"]) == (128, 96)  # frames are 64x48 LR
    m = job["metrics"]
    reports = m["frames"]
    assert [r["index"] for r in reports] == [0, 1, 2, 3]
    assert reports[0]["shift_x"] == 0 and reports[0]["shift_y"] == 0
    for r, (dy, dx) in zip(reports[1:], shifts[1:], strict=True):
        assert abs(r["shift_y"] - dy) < 0.25 and abs(r["shift_x"] - dx) < 0.25  # registration ran
    assert m["psnr_y"] is not None and m["bicubic_psnr_y"] is not None
    assert m["psnr_y"] > m["bicubic_psnr_y"]  # fusing 4 frames beats upsampling the reference alone
    assert m["lr_consistency_psnr"] > 25


def test_burst_validation_names_the_offending_frame(live: LiveService) -> None:
    a, b = images.png(40, 30), images.png(40, 30, seed=1)
    cases = [
        ([a, images.png(41, 30)], "frame_mismatch", "frames[1]"),  # size
        ([a, b, images.png(40, 30, mode="L")], "frame_mismatch", "frames[2]"),  # mode
        ([a, b"not an image"], "not_an_image", "frames[1]"),
        ([a], "invalid_frame_count", "frames"),
    ]
    for frames, code, field in cases:
        resp = _post(live, frames, scale="2", model="shift_add")
        assert resp.status_code == 422, resp.text
        body = resp.json()
        assert body["error"]["code"] == code
        assert field in body["error"]["message"]
    resp = _post(live, [a, b], scale="2", model="bicubic")  # a single-image model cannot fuse
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unknown_model"
    resp = _post(live, [a, b], scale="2", model="shift_add", reference_frame="5")
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_reference_frame"
    with live.client() as c:  # both image and frames: ambiguous
        resp = c.post("/v1/upscale", files=[("image", ("a.png", a)), ("frames", ("b.png", b))], data={"scale": "2"})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request"


def test_models_lists_burst_models_with_frame_limits(live: LiveService) -> None:
    with live.client() as c:
        models = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
    burst = [m for m in models.values() if m["kind"] == "burst"]
    assert burst, "no burst model listed"
    for m in burst:
        assert m["min_frames"] >= 2 and m["max_frames"] >= m["min_frames"]
