"""Every bad input of the contract, against the live service: clear JSON errors, never a 5xx, and the
service keeps serving (the `live` fixture checks both processes and /healthz after each test)."""

from __future__ import annotations

import json
import secrets
import select
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveService
from tests.service import images

UPLOAD_LIMIT = 8 * 1024 * 1024  # SRSERVE_MAX_UPLOAD_BYTES of the live service (tests/conftest.py)


def assert_error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


def post(
    live: LiveService, image: bytes | None, *, reference: bytes | None = None, **form: str
) -> httpx.Response:
    files = {}
    if image is not None:
        files["image"] = ("in.png", image, "application/octet-stream")
    if reference is not None:
        files["reference"] = ("ref.png", reference, "application/octet-stream")
    with live.client() as c:
        return c.post("/v1/upscale", files=files or None, data=form or None)


def test_not_an_image(live: LiveService) -> None:
    body = assert_error(post(live, b"this is plain text, not pixels", scale="2"), 422, "not_an_image")
    assert "image" in body["error"]["message"]


def test_empty_file(live: LiveService) -> None:
    assert_error(post(live, b"", scale="2"), 422, "empty_file")


def test_truncated_png(live: LiveService) -> None:
    assert_error(post(live, images.truncated(images.png(80, 60)), scale="2"), 422, "corrupt_image")


def test_truncated_jpeg(live: LiveService) -> None:
    assert_error(post(live, images.truncated(images.jpeg(96, 64)), scale="2"), 422, "corrupt_image")


def test_decompression_bomb_is_refused_without_decoding(live: LiveService) -> None:
    bomb = images.png_bomb(50_000, 50_000)
    assert len(bomb) < 200
    t = time.monotonic()
    body = assert_error(post(live, bomb, scale="2"), 413, "image_too_large")
    assert time.monotonic() - t < 5.0  # decoding 7.5 GB would take far longer (or kill the API)
    assert "50000x50000" in body["error"]["message"]


def test_input_over_the_pixel_limit(live: LiveService) -> None:
    assert_error(post(live, images.solid_png(1200, 1000), scale="2"), 413, "image_too_large")  # limit 1 MP


def test_output_over_the_pixel_limit(live: LiveService) -> None:
    body = assert_error(post(live, images.solid_png(1000, 1000), scale="8"), 413, "output_too_large")
    assert body["detail"]["width"] == 8000


def test_unknown_model_lists_valid_names(live: LiveService) -> None:
    body = assert_error(post(live, images.png(), scale="4", model="no_such_net"), 422, "unknown_model")
    assert "bicubic" in body["detail"]["valid_models"]
    assert "no_such_net" in body["error"]["message"]


@pytest.mark.parametrize("scale", ["5", "7"])
def test_scale_the_model_does_not_support(live: LiveService, scale: str) -> None:
    body = assert_error(post(live, images.png(), scale=scale, model="bicubic"), 422, "unsupported_scale")
    assert body["detail"]["supported_scales"] == [2, 3, 4, 8]


@pytest.mark.parametrize(
    ("field", "value"), [("scale", "four"), ("scale", "0"), ("scale", "99"), ("format", "gif")]
)
def test_malformed_fields_name_the_field(live: LiveService, field: str, value: str) -> None:
    body = assert_error(post(live, images.png(), **{field: value}), 422, "invalid_request")
    assert body["detail"][0]["field"] == field
    assert field in body["error"]["message"]


def test_missing_image_names_the_field(live: LiveService) -> None:
    body = assert_error(post(live, None, scale="2"), 422, "invalid_request")
    assert body["detail"][0]["field"] == "image"


def test_reference_size_mismatch(live: LiveService) -> None:
    body = assert_error(
        post(live, images.png(20, 10), reference=images.png(40, 20), scale="4"),
        422,
        "reference_size_mismatch",
    )
    assert body["detail"]["expected"] == {"width": 80, "height": 40}
    assert body["detail"]["got"] == {"width": 40, "height": 20}


def test_reference_that_is_not_an_image(live: LiveService) -> None:
    body = assert_error(post(live, images.png(20, 10), reference=b"nope", scale="2"), 422, "not_an_image")
    assert body["error"]["message"].startswith("reference")


@pytest.mark.parametrize("job_id", [secrets.token_urlsafe(16), "short", "bad$id!", "x" * 300])
def test_unknown_job_is_404(live: LiveService, job_id: str) -> None:
    with live.client() as c:
        assert_error(c.get(f"/v1/jobs/{job_id}"), 404, "job_not_found")
        assert_error(c.get(f"/v1/jobs/{job_id}/result"), 404, "job_not_found")
        assert_error(c.delete(f"/v1/jobs/{job_id}"), 404, "job_not_found")


def test_unknown_route_and_method_are_json(live: LiveService) -> None:
    with live.client() as c:
        assert c.get("/v1/jobs/..%2F..%2Fetc").status_code == 404
        assert_error(c.get("/v1/nothing-here"), 404, "not_found")
        assert_error(c.put("/v1/upscale"), 405, "method_not_allowed")


def _raw_request(live: LiveService, head: str, body_parts: list[bytes], max_send: int) -> tuple[bytes, int]:
    """Send a request by hand; stop sending as soon as the server answers. Returns (answer, bytes sent)."""
    url = httpx.URL(live.base_url)
    sent = 0
    answer = b""
    with socket.create_connection((url.host, url.port), timeout=15) as s:
        s.sendall(head.encode())
        try:
            for part in body_parts:
                if select.select([s], [], [], 0)[0] or sent > max_send:
                    break
                s.sendall(part)
                sent += len(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(15)
        try:
            while chunk := s.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    return answer, sent


def _parse(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body.decode())


def test_oversize_upload_refused_from_its_content_length(live: LiveService) -> None:
    declared = 100 * 1024 * 1024
    head = (
        "POST /v1/upscale HTTP/1.1\r\nHost: test\r\n"
        "Content-Type: multipart/form-data; boundary=BOUNDARY\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    # only 64 KiB of the declared 100 MiB is ever sent: the answer must not wait for the rest
    answer, sent = _raw_request(live, head, [b"--BOUNDARY\r\n" + b"a" * 65536], max_send=declared)
    status, body = _parse(answer)
    assert status == 413 and body["error"]["code"] == "upload_too_large"
    assert body["detail"]["limit_bytes"] == UPLOAD_LIMIT
    assert sent < 100_000


def test_oversize_chunked_upload_is_cut_off_while_streaming(live: LiveService) -> None:
    head = (
        "POST /v1/upscale HTTP/1.1\r\nHost: test\r\n"
        "Content-Type: multipart/form-data; boundary=BOUNDARY\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = 256 * 1024
    start = b'--BOUNDARY\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    chunks = [f"{len(start):x}\r\n".encode() + start + b"\r\n"]
    chunks += [f"{piece:x}\r\n".encode() + b"\x00" * piece + b"\r\n"] * 160  # 40 MiB offered
    answer, sent = _raw_request(live, head, chunks, max_send=30 * 1024 * 1024)
    status, body = _parse(answer)
    assert status == 413 and body["error"]["code"] == "upload_too_large"
    assert sent < 30 * 1024 * 1024  # refused mid-stream, long before the whole body


def test_service_still_works_after_bad_input(live: LiveService, data_dir: Path) -> None:
    resp = post(live, (data_dir / "eval/Set5/x2/img_002_LR.png").read_bytes(), scale="2", model="bicubic")
    assert resp.status_code == 202, resp.text
    assert live.wait_for(resp.json()["id"], {"succeeded", "failed"})["status"] == "succeeded"
