"""The attack surface of the live service: unguessable job ids, no filesystem path from user input,
model names checked against the registry, uploads never unpickled, CORS off unless configured."""

from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path

from rq.serializers import JSONSerializer

from service.main import build_services
from service.settings import ServiceSettings
from tests.conftest import REPO_ROOT, LiveService
from tests.security.conftest import ExtraApi
from tests.service import images


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _submit(live: LiveService, content: bytes, filename: str = "a.png", **form: str) -> dict:
    with live.client() as c:
        resp = c.post("/v1/upscale", files={"image": (filename, content, "image/png")},
                      data={"scale": "2", "model": "bicubic", **form})
    return {**resp.json(), "http": resp.status_code}


def test_job_ids_are_unguessable(live: LiveService) -> None:
    ids = [_submit(live, images.png(8, 8, seed=i))["id"] for i in range(40)]
    assert len(set(ids)) == len(ids)
    for job_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", job_id)  # secrets.token_urlsafe(16): 128 random bits
    # no shared prefix or counter: the ids spread over the whole alphabet at every position
    assert all(len({i[pos] for i in ids}) > 10 for pos in range(21))
    assert 22 * math.log2(64) >= 128


def test_no_filesystem_path_comes_from_user_input(live: LiveService) -> None:
    hostile_names = ["../../../../tmp/srserve-pwned.png", "/etc/passwd", "..\\..\\boot.ini", "a\x00b.png"]
    ids = []
    for name in hostile_names:
        body = _submit(live, images.png(8, 8), filename=name)
        assert body["http"] == 202, body
        ids.append(body["id"])
    for job_id in ids:
        assert live.wait_for(job_id, {"succeeded", "failed"})["status"] == "succeeded"
    assert not Path("/tmp/srserve-pwned.png").exists()
    # every stored file is under jobs/<server-made id>/, named by the server
    for path in live.blob_dir.rglob("*"):
        if path.is_file():
            rel = path.relative_to(live.blob_dir).parts
            assert rel[0] == "jobs" and re.fullmatch(r"[A-Za-z0-9_-]{16,64}", rel[1]), rel
            assert rel[2:] in {("input", "0"), ("reference",), ("outcome.json",)} or re.fullmatch(
                r"result\.(png|webp|jpeg)", rel[2]
            ), rel
    with live.client() as c:
        for path in ["/v1/jobs/..%2F..%2Fetc%2Fpasswd", "/v1/jobs/../../etc/passwd/result", "/v1/jobs/%2e%2e"]:
            assert c.get(path).status_code == 404, path


def test_model_names_are_checked_against_the_registry(live: LiveService) -> None:
    for model in ["../../weights/espcn_x4", "worker.jobs.run_upscale", "os.system", "espcn_x4; rm -rf /"]:
        body = _submit(live, images.png(8, 8), model=model)
        assert body["http"] == 422 and body["error"]["code"] == "unknown_model", body
        assert "bicubic" in body["detail"]["valid_models"]


def test_uploads_are_never_unpickled(live: LiveService, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Exploit(str(marker)))
    for name in ("a.png", "a.pkl"):
        body = _submit(live, payload, filename=name)
        assert body["http"] == 422 and body["error"]["code"] == "not_an_image", body
    assert not marker.exists()
    # jobs travel as JSON, never pickle: RQ's default serializer is not used on either side
    services = build_services(ServiceSettings(redis_url=live.redis_url, blob_dir=tmp_path / "b"))
    assert services.queue.serializer is JSONSerializer
    worker_main = (REPO_ROOT / "worker" / "main.py").read_text()
    assert "serializer=JSONSerializer" in worker_main
    for folder in ("service", "srserve", "worker"):
        for source in (REPO_ROOT / folder).rglob("*.py"):
            text = source.read_text()
            assert "pickle.load" not in text and "import pickle" not in text, source


def test_cors_is_off_by_default(live: LiveService) -> None:
    with live.client() as c:
        simple = c.get("/v1/models", headers={"Origin": "https://evil.example"})
        preflight = c.options("/v1/upscale", headers={"Origin": "https://evil.example",
                                                      "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in simple.headers
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_when_configured_even_with_keys_required(make_api: ExtraApi) -> None:
    env = {"SRSERVE_CORS_ORIGINS": "https://app.example", "SRSERVE_AUTH_REQUIRED": "true"}
    with make_api(**env) as api, api.client() as c:
        preflight = c.options("/v1/upscale", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,idempotency-key"})
        assert preflight.status_code == 200, preflight.text  # preflights carry no key: never 401
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        refused = c.get("/v1/models", headers={"Origin": "https://app.example"})
        assert refused.status_code == 401  # and the browser can read why
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
        other = c.options("/v1/upscale", headers={"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers
