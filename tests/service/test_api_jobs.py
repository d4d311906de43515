"""The whole request path against a live API process and a live worker process on a real Redis:
submit → poll → download, metric values, transitions, cancel, failure codes, readiness, /metrics,
and `rq info` seeing the same queue and worker."""

from __future__ import annotations

import io
import re
import secrets
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from redis import Redis
from rq import Queue
from rq.command import send_stop_job_command
from rq.job import Job
from rq.serializers import JSONSerializer

from model_store.card import Catalog
from model_store.metrics import bicubic_upscale_uint8, quality_y
from srserve import imaging, jobspec
from srserve.blobstore import FilesystemBlobStore
from tests.conftest import LiveService
from tests.service import images
from tests.worker.slow_jobs import SLOW_UPSCALE

ORDER = ["queued", "running", "succeeded"]


def submit(live: LiveService, image: bytes, reference: bytes | None = None, **form: str) -> dict:
    files = {"image": ("in.png", image, "image/png")}
    if reference is not None:
        files["reference"] = ("ref.png", reference, "image/png")
    with live.client() as c:
        resp = c.post("/v1/upscale", files=files, data=form)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert resp.headers["location"] == f"/v1/jobs/{body['id']}"
    return body


def watch(live: LiveService, job_id: str, timeout: float = 60.0) -> tuple[list[str], dict]:
    """Poll until terminal; returns the distinct statuses seen, in order, and the last body."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with live.client() as c:
        while True:
            body = c.get(f"/v1/jobs/{job_id}").json()
            if not seen or seen[-1] != body["status"]:
                seen.append(body["status"])
            if body["status"] in ("succeeded", "failed", "canceled"):
                return seen, body
            assert time.monotonic() < deadline, f"job stuck: {body}"
            time.sleep(0.02)


def enqueue_direct(live: LiveService, image: bytes, func: str = jobspec.RUN_UPSCALE, *args: object) -> str:
    """Store blobs and enqueue like the API does, but with any job function (e.g. the slow one)."""
    job_id = secrets.token_urlsafe(16)
    FilesystemBlobStore(live.blob_dir).put(jobspec.input_key(job_id), image)
    payload = jobspec.UpscalePayload(
        job_id=job_id,
        model="bicubic",
        scale=2,
        input_keys=[jobspec.input_key(job_id)],
        input=jobspec.InputInfo(width=1, height=1),
        submitted_at=time.time(),
    )
    queue = Queue(live.queue_name, connection=Redis.from_url(live.redis_url), serializer=JSONSerializer)
    queue.enqueue(
        func, payload.model_dump(mode="json"), *args, job_id=job_id, job_timeout=120, meta={"progress": 0.0}
    )
    return job_id


def test_submit_poll_download_with_quality_metrics(live: LiveService, data_dir: Path) -> None:
    lr_path, hr_path = data_dir / "eval/Set5/x4/img_001_LR.png", data_dir / "eval/Set5/x4/img_001_HR.png"
    created = submit(live, lr_path.read_bytes(), hr_path.read_bytes(), scale="4", model="bicubic")
    assert created["status"] == "queued" and created["model"] == "bicubic" and created["scale"] == 4
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", created["id"])
    seen, job = watch(live, created["id"])
    assert job["status"] == "succeeded", job
    assert seen == sorted(seen, key=ORDER.index)  # never goes backwards
    lr, hr = imaging.load_rgb_uint8(str(lr_path)), imaging.load_rgb_uint8(str(hr_path))
    assert job["progress"] == 1.0 and job["error"] is None and job["queue_position"] is None
    assert job["input"] == {"width": lr.shape[1], "height": lr.shape[0], "frames": 1}
    created_at, started, finished = (
        datetime.fromisoformat(job[k]) for k in ("created_at", "started_at", "finished_at")
    )
    assert created_at <= started <= finished

    result = job["result"]
    assert result["url"] == f"/v1/jobs/{job['id']}/result" == job["links"]["result"]
    assert (result["width"], result["height"]) == (hr.shape[1], hr.shape[0])
    assert result["format"] == "png" and result["content_type"] == "image/png"
    with live.client() as c:
        download = c.get(result["url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert len(download.content) == result["bytes"] == int(download.headers["content-length"])
    out = np.asarray(Image.open(io.BytesIO(download.content)).convert("RGB"))
    assert out.shape == hr.shape

    m = job["metrics"]
    offline = quality_y(bicubic_upscale_uint8(lr, 4), hr, shave=4)  # what model_store.metrics says
    assert m["psnr_y"] == pytest.approx(offline.psnr_y, abs=0.05)
    assert m["ssim_y"] == pytest.approx(offline.ssim_y, abs=0.002)
    assert m["bicubic_psnr_y"] == pytest.approx(offline.psnr_y, abs=1e-3)
    assert abs(m["psnr_y"] - m["bicubic_psnr_y"]) < 0.05  # model=bicubic gains nothing over bicubic
    assert quality_y(out, hr, shave=4).psnr_y == pytest.approx(m["psnr_y"], abs=1e-3)  # measured = served
    assert m["lr_consistency_psnr"] > 35
    assert m["device"] == "cpu" and m["model"] == "bicubic"
    for key in ("queue_wait_s", "decode_s", "inference_s", "encode_s", "metrics_s", "total_s"):
        assert m["timings"][key] is not None and m["timings"][key] >= 0, key


def test_default_model_and_other_formats(live: LiveService) -> None:
    default = Catalog.load().default_for(2)
    assert default is not None
    for fmt, content_type in [("webp", "image/webp"), ("jpeg", "image/jpeg")]:
        created = submit(live, images.png(24, 16), scale="2", format=fmt)
        assert created["model"] == default.name
        _, job = watch(live, created["id"])
        assert job["status"] == "succeeded", job
        assert job["result"]["content_type"] == content_type
        with live.client() as c:
            resp = c.get(job["result"]["url"])
        assert resp.headers["content-type"] == content_type
        assert Image.open(io.BytesIO(resp.content)).size == (48, 32)
        assert job["metrics"]["psnr_y"] is None and job["metrics"]["lr_consistency_psnr"] is not None


def test_transitions_queue_position_and_progress(live: LiveService) -> None:
    # the live worker holds SRSERVE_JOBS_IN_FLIGHT = 2 jobs: two slow ones keep `second` queued
    first = enqueue_direct(live, images.png(16, 16), SLOW_UPSCALE, 1.5)
    filler = enqueue_direct(live, images.png(16, 16, seed=2), SLOW_UPSCALE, 1.5)
    second = enqueue_direct(live, images.png(16, 16, seed=1), SLOW_UPSCALE, 0.2)
    running = live.wait_for(first, {"running"})
    live.wait_for(filler, {"running"})
    assert 0.0 < running["progress"] < 1.0 and running["started_at"] is not None
    with live.client() as c:
        waiting = c.get(f"/v1/jobs/{second}").json()
    assert waiting["status"] == "queued" and waiting["queue_position"] == 0
    assert waiting["links"]["cancel"] == f"/v1/jobs/{second}"
    with live.client() as c:
        early = c.get(f"/v1/jobs/{second}/result")
    assert early.status_code == 409 and early.json()["error"]["code"] == "job_not_finished"
    seen, _ = watch(live, second)
    assert seen == ["queued", "running", "succeeded"] or seen == ["queued", "succeeded"]
    assert live.wait_for(first, {"succeeded"})["progress"] == 1.0


def test_cancel_running_job(live: LiveService, redis_conn: Redis) -> None:
    job_id = enqueue_direct(live, images.png(16, 16), SLOW_UPSCALE, 60)
    live.wait_for(job_id, {"running"})
    with live.client() as c:
        resp = c.delete(f"/v1/jobs/{job_id}")
    assert resp.status_code in (200, 202), resp.text
    job = live.wait_for(job_id, {"canceled", "succeeded", "failed"}, timeout=15)
    assert job["status"] == "canceled" and job["error"]["code"] == "canceled"
    assert job["finished_at"] is not None and job["result"] is None
    rq_job = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    assert rq_job.get_status() == "stopped"  # RQ's own state for a job stopped on request
    with live.client() as c:
        assert c.delete(f"/v1/jobs/{job_id}").status_code == 200  # idempotent
        gone = c.get(f"/v1/jobs/{job_id}/result")
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "job_canceled"
    # the worker goes on working
    assert (
        watch(live, submit(live, images.png(), scale="2", model="bicubic")["id"])[1]["status"] == "succeeded"
    )


def test_rq_stop_job_command_stops_a_running_job(live: LiveService, redis_conn: Redis) -> None:
    job_id = enqueue_direct(live, images.png(16, 16), SLOW_UPSCALE, 60)
    live.wait_for(job_id, {"running"})
    send_stop_job_command(redis_conn, job_id, serializer=JSONSerializer)
    assert live.wait_for(job_id, {"canceled", "succeeded", "failed"}, timeout=15)["status"] == "canceled"


def test_cancel_finished_job_is_a_conflict(live: LiveService) -> None:
    job_id = submit(live, images.png(), scale="2", model="bicubic")["id"]
    watch(live, job_id)
    with live.client() as c:
        resp = c.delete(f"/v1/jobs/{job_id}")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "job_finished"


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        is_sample = line.startswith((name + "{", name + " "))
        if is_sample and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_failing_job_gets_a_stable_code_and_is_not_retried(live: LiveService) -> None:
    before = _metric(
        httpx.get(live.worker_metrics_url).text, "srserve_worker_jobs_failed_total", code="decode_failed"
    )
    job_id = enqueue_direct(live, b"\x89PNG\r\n\x1a\n garbage that passed no validation")
    job = live.wait_for(job_id, {"failed", "succeeded"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "decode_failed" and job["error"]["message"]
    assert job["result"] is None and job["metrics"] is None
    time.sleep(0.5)  # a retry would have been picked up by now
    after = _metric(
        httpx.get(live.worker_metrics_url).text, "srserve_worker_jobs_failed_total", code="decode_failed"
    )
    assert after - before == 1  # permanent failure: ran once despite Retry(max=2)
    with live.client() as c:
        resp = c.get(f"/v1/jobs/{job_id}/result")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "job_failed"


def test_readiness_and_models(live: LiveService) -> None:
    with live.client() as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["workers"] >= 1
        assert c.get("/healthz").json() == {"status": "ok"}
        models = c.get("/v1/models").json()["models"]
        assert c.get("/docs").status_code == 200
        assert "/v1/upscale" in c.get("/openapi.json").json()["paths"]
    bicubic = next(m for m in models if m["name"] == "bicubic")
    assert bicubic["scales"] == [2, 3, 4, 8] and bicubic["params"] == 0
    assert {
        "dataset": "Set5",
        "scale": 4,
        "psnr_y": 28.43,
        "ssim_y": 0.8113,
        "paper_psnr_y": 28.42,
    } in bicubic["quality"]
    # where bf16 may serve a model, per device: CUDA's flag and the CPU path's own measurement
    espcn = next(m for m in models if m["name"] == "espcn_x4")
    shipped = Catalog.load().get("espcn_x4")
    assert espcn["bf16_on_cuda"] is shipped.half_precision_safe is True
    assert espcn["cpu_bf16_psnr_delta"] == shipped.cpu_bf16_psnr_delta is not None
    assert bicubic["bf16_on_cuda"] is False and bicubic["cpu_bf16_psnr_delta"] is None
    for scale in (2, 3, 4):
        default = Catalog.load().default_for(scale)
        assert default is not None
        assert scale in next(m for m in models if m["name"] == default.name)["default_for_scales"]


def test_prometheus_metrics(live: LiveService) -> None:
    job_id = submit(live, images.png(), scale="2", model="bicubic")["id"]
    watch(live, job_id)
    with live.client() as c:
        c.post("/v1/upscale", files={"image": ("x", b"nope", "image/png")})
        text = c.get("/metrics").text
    assert _metric(text, "srserve_http_requests_total", route="/v1/upscale", method="POST", status="202") >= 1
    assert _metric(text, "srserve_http_requests_total", route="/v1/upscale", method="POST", status="422") >= 1
    assert (
        _metric(text, "srserve_http_requests_total", route="/v1/jobs/{job_id}", method="GET", status="200")
        >= 1
    )
    assert _metric(text, "srserve_jobs_submitted_total", model="bicubic") >= 1
    assert _metric(text, "srserve_uploads_rejected_total", code="not_an_image") >= 1
    assert "srserve_http_request_duration_seconds_bucket" in text
    assert f'srserve_queue_depth{{queue="{live.queue_name}"}}' in text
    assert _metric(text, "srserve_workers", queue=live.queue_name) >= 1
    assert _metric(text, "srserve_redis_up") == 1
    worker_text = httpx.get(live.worker_metrics_url).text
    assert _metric(worker_text, "srserve_worker_jobs_processed_total", model="bicubic") >= 1
    assert _metric(worker_text, "srserve_worker_job_inference_seconds_count", model="bicubic") >= 1


def test_rq_info_shows_queue_and_worker(live: LiveService) -> None:
    watch(live, submit(live, images.png(), scale="2", model="bicubic")["id"])
    rq = shutil.which("rq", path=str(Path(sys.executable).parent)) or "rq"
    out = subprocess.run(
        [rq, "info", "--url", live.redis_url, "--serializer", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert live.queue_name in out.stdout
    worker_name = next(a for a in live.procs["worker"].args if str(a).startswith("test-worker-"))  # type: ignore[union-attr]
    assert worker_name in out.stdout
