"""The API in-process (uvicorn in a thread) on a real Redis but a queue no worker listens to: queued-job
cancellation, queue positions, readiness without workers, a Redis outage, links, CORS, body limit."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.served_app import AppClient
from tests.service import images

Client = Callable[..., AppClient]


def _submit(client: AppClient, **form: str) -> dict:
    resp = client.post(
        "/v1/upscale",
        files={"image": ("a.png", images.png(12, 10), "image/png")},
        data={"scale": "2", "model": "bicubic", **form},
    )
    assert resp.status_code == 202, resp.text
    return resp.json()


def test_readyz_without_worker_is_503(make_client: Client) -> None:
    resp = make_client().get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["error"]["code"] == "not_ready" and body["detail"]["workers"] == 0
    assert "Retry-After" in resp.headers


def test_queue_positions_and_cancel_of_a_queued_job(make_client: Client, redis_conn: Redis) -> None:
    client = make_client()
    queue_name = client.app.state.settings.queue_name
    first, second = _submit(client), _submit(client)
    assert client.get(f"/v1/jobs/{first['id']}").json()["queue_position"] == 0
    assert client.get(f"/v1/jobs/{second['id']}").json()["queue_position"] == 1

    resp = client.delete(f"/v1/jobs/{first['id']}")
    assert resp.status_code == 200, resp.text
    canceled = resp.json()
    assert canceled["status"] == "canceled" and canceled["finished_at"] is not None
    assert canceled["error"]["code"] == "canceled" and "cancel" not in canceled["links"]
    assert client.get(f"/v1/jobs/{first['id']}").json()["status"] == "canceled"
    assert client.get(f"/v1/jobs/{second['id']}").json()["queue_position"] == 0
    queue = Queue(queue_name, connection=redis_conn, serializer=JSONSerializer)
    assert queue.job_ids == [second["id"]]
    assert redis_conn.ttl(f"rq:job:{first['id']}") > 0  # canceled jobs expire like failed ones
    result = client.get(f"/v1/jobs/{first['id']}/result")
    assert result.status_code == 409 and result.json()["error"]["code"] == "job_canceled"
    assert client.delete(f"/v1/jobs/{first['id']}").status_code == 200  # idempotent


def test_redis_outage_is_503_with_retry_after(make_client: Client, tmp_path: Path) -> None:
    client = make_client(redis_url="redis://127.0.0.1:1/0", redis_timeout_s=1.0, blob_dir=tmp_path / "down")
    resp = client.post(
        "/v1/upscale", files={"image": ("a.png", images.png(), "image/png")}, data={"scale": "2"}
    )
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "redis_unavailable"
    assert resp.headers["Retry-After"] == "5"
    assert not any((tmp_path / "down").rglob("input")), "the uploaded blobs of a failed enqueue must go"
    assert client.get("/v1/jobs/AAAAAAAAAAAAAAAAAAAAAA").status_code == 503
    assert client.delete("/v1/jobs/AAAAAAAAAAAAAAAAAAAAAA").status_code == 503
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "srserve_redis_up 0.0" in metrics.text


def test_other_rq_jobs_are_not_visible(make_client: Client, redis_conn: Redis) -> None:
    client = make_client()
    queue = Queue(client.app.state.settings.queue_name, connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue("os.getcwd", job_id="someone-elses-job-123")
    resp = client.get(f"/v1/jobs/{job.id}")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "job_not_found"


def test_public_base_url_makes_absolute_links(make_client: Client) -> None:
    client = make_client(public_base_url="https://sr.example.com/")
    resp = client.post(
        "/v1/upscale", files={"image": ("a.png", images.png(), "image/png")}, data={"scale": "2"}
    )
    assert resp.headers["location"].startswith("https://sr.example.com/v1/jobs/")
    assert resp.json()["links"]["self"] == resp.headers["location"]


def test_cors_only_when_configured(make_client: Client) -> None:
    preflight = {"Origin": "http://app.test", "Access-Control-Request-Method": "POST"}
    off = make_client().options("/v1/upscale", headers=preflight)
    assert "access-control-allow-origin" not in off.headers
    on = make_client(cors_origins=["http://app.test"]).options("/v1/upscale", headers=preflight)
    assert on.headers["access-control-allow-origin"] == "http://app.test"


def test_body_limit_applies_in_process(make_client: Client) -> None:
    client = make_client(max_upload_bytes=4096)
    resp = client.post(
        "/v1/upscale", files={"image": ("a.png", images.png(64, 64), "image/png")}, data={"scale": "2"}
    )
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "upload_too_large"
    assert client.get("/healthz").status_code == 200


def test_animated_image_with_too_many_frames(make_client: Client) -> None:
    frames = [Image.new("RGB", (8, 8), (i * 10, 0, 0)) for i in range(20)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    client = make_client(max_frames=16)
    resp = client.post(
        "/v1/upscale", files={"image": ("a.gif", buf.getvalue(), "image/gif")}, data={"scale": "2"}
    )
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "too_many_frames"
    ok = make_client(max_frames=32).post(
        "/v1/upscale", files={"image": ("a.gif", buf.getvalue(), "image/gif")}, data={"scale": "2"}
    )
    assert ok.status_code == 202, ok.text


def test_unwritable_blob_store_is_503_not_500(make_client: Client, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    client = make_client(blob_dir=tmp_path / "blobs")
    blocked.write_text("a file where the job folders should go")
    client.app.state.services.jobs.store.root = blocked
    resp = client.post("/v1/upscale", files={"image": ("a.png", images.png(), "image/png")}, data={"scale": "2"})
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "storage_unavailable" and "Retry-After" in resp.headers
