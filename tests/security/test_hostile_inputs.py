"""Hostile and odd uploads against the live service (real HTTP, Redis, worker): each one gets the
correct output or a clear 4xx, and the service keeps serving (the `live` fixture checks that both
processes are alive and /healthz answers after every test).

Rules stated here and in the README: animated inputs (GIF, WebP, APNG) use their first frame, with a
note; frames over SRSERVE_MAX_FRAMES are refused from the header. Alpha is upscaled with bicubic
next to the model's RGB and returned (RGBA). EXIF orientation is applied, the ICC profile is kept,
16-bit PNGs come back as 16-bit PNGs. Other metadata is dropped (never echoed back)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from model_store.resize import imresize
from srserve import png
from tests.conftest import LiveService
from tests.security import odd_images as odd
from tests.service import images


def submit(live: LiveService, data: bytes, filename: str = "in.png", content_type: str = "image/png",
           **form: str) -> tuple[int, dict]:
    with live.client() as c:
        resp = c.post("/v1/upscale", files={"image": (filename, data, content_type)},
                      data={"scale": "2", "model": "bicubic", **form})
    return resp.status_code, resp.json()


def run(live: LiveService, data: bytes, **kw: str) -> tuple[dict, bytes]:
    """Submit, wait, download: the succeeded job and its result bytes."""
    status, body = submit(live, data, **kw)
    assert status == 202, body
    job = live.wait_for(body["id"], {"succeeded", "failed", "canceled"})
    assert job["status"] == "succeeded", job
    with live.client() as c:
        result = c.get(job["result"]["url"])
    assert result.status_code == 200
    return job, result.content


def refused(live: LiveService, data: bytes, status: int, *codes: str, **kw: str) -> dict:
    got, body = submit(live, data, **kw)
    assert got == status and body["error"]["code"] in codes, (got, body)
    return body


# ---- bombs and limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [odd.jpeg_bomb, odd.gif_bomb, odd.webp_bomb, images.png_bomb])
def test_huge_declared_dimensions_refused_from_the_header(live: LiveService, make) -> None:  # type: ignore[no-untyped-def]
    data = make()
    assert len(data) < 1000
    refused(live, data, 413, "image_too_large")


def test_deeply_compressed_single_colour_png(live: LiveService) -> None:
    data = odd.deep_png(20_000)
    assert len(data) < 1_000_000  # 400 MB of pixels
    body = refused(live, data, 413, "image_too_large")
    assert "20000x20000" in body["error"]["message"]


def test_idat_stream_that_inflates_past_the_image(live: LiveService) -> None:
    _job, out = run(live, odd.inflating_tail_png())
    assert Image.open(io.BytesIO(out)).size == (100, 80)


def test_frames_over_the_limit_refused_before_decoding(live: LiveService) -> None:
    refused(live, odd.animated("PNG", frames=20), 413, "too_many_frames")
    refused(live, odd.animated("GIF", frames=17), 413, "too_many_frames")


# ---- broken and lying files -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_truncated(live: LiveService, fmt: str) -> None:
    full = odd.pil(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)), fmt)
    refused(live, full[: len(full) // 2], 422, "corrupt_image", "not_an_image")


def test_corrupted_bytes(live: LiveService) -> None:
    png = bytearray(images.png(32, 32, seed=4))
    png[png.find(b"IDAT") + 20] ^= 0xFF  # CRC no longer matches
    refused(live, bytes(png), 422, "corrupt_image", "not_an_image")
    jpeg = bytearray(images.jpeg(64, 48))
    for i in range(len(jpeg) // 2, len(jpeg) - 4, 97):
        jpeg[i] ^= 0x55
    status, body = submit(live, bytes(jpeg))
    # damaged entropy-coded data may still decode (into noise): either a result or a clear 422
    assert status in (202, 422), body
    if status == 202:
        assert live.wait_for(body["id"], {"succeeded", "failed"})["status"] in ("succeeded", "failed")


@pytest.mark.parametrize("data", [b"", b"\x00", b"GIF89a", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", b"<svg xmlns='x'/>",
                                  b"#!/bin/sh\nrm -rf /\n", b"\x89PNG\r\n\x1a\n"])
def test_not_images(live: LiveService, data: bytes) -> None:
    refused(live, data, 422, "empty_file", "not_an_image", "corrupt_image")


def test_extension_and_content_type_are_ignored(live: LiveService) -> None:
    job, out = run(live, images.png(10, 8), filename="photo.jpg", content_type="image/jpeg")
    assert job["result"]["content_type"] == "image/png" and out.startswith(b"\x89PNG")
    job, out = run(live, images.jpeg(20, 16), filename="x.gif", content_type="application/octet-stream")
    assert Image.open(io.BytesIO(out)).size == (40, 32)
    refused(live, b"just text, named like an image", 422, "not_an_image", filename="a.png")


@pytest.mark.parametrize("make", [odd.png_with_zip_appended, odd.png_with_script_text])
def test_polyglots_are_processed_as_images_and_their_payload_dropped(live: LiveService, make) -> None:  # type: ignore[no-untyped-def]
    _job, out = run(live, make())
    assert out.startswith(b"\x89PNG") and b"<script>" not in out and b"PK\x03\x04" not in out


@pytest.mark.parametrize("name", ["png", "gif", "bmp"])
def test_zero_sized(live: LiveService, name: str) -> None:
    refused(live, odd.zero_sized()[name], 422, "not_an_image", "corrupt_image")


def test_huge_metadata_chunks(live: LiveService) -> None:
    _job, out = run(live, odd.with_text_chunk(b"tEXt", b"Comment\x00" + b"A" * 6_000_000))
    assert len(out) < 10_000  # processed; the 6 MB comment is not copied into the result
    import zlib

    bomb = odd.with_text_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * 20_000_000))
    assert len(bomb) < 50_000
    refused(live, bomb, 422, "metadata_too_large")
    itxt = odd.with_text_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(b"B" * 20_000_000))
    refused(live, itxt, 422, "metadata_too_large")


# ---- multipart ------------------------------------------------------------------------------------


def _multipart(parts: list[tuple[bytes, bytes]]) -> tuple[bytes, dict[str, str]]:
    body = b"".join(b"--BOUND\r\n" + head + b"\r\n\r\n" + value + b"\r\n" for head, value in parts)
    return body + b"--BOUND--\r\n", {"Content-Type": "multipart/form-data; boundary=BOUND"}


IMAGE_PART = (b'Content-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png',
              images.png(8, 8))


@pytest.mark.parametrize(
    ("parts", "status", "code"),
    [
        ([(b'Content-Disposition: form-data; name="f%d"; filename="a.png"' % i, b"x") for i in range(40)],
         413, "too_many_parts"),
        ([(b'Content-Disposition: form-data; name="f%d"' % i, b"x") for i in range(100)] + [IMAGE_PART],
         413, "too_many_fields"),
        ([(b'Content-Disposition: form-data; name="model"', b"m" * 200_000), IMAGE_PART], 413, "form_field_too_large"),
        ([(b'Content-Disposition: form-data; name="' + b"n" * 3_000_000 + b'"', b"2"), IMAGE_PART],
         400, "malformed_multipart"),
        ([(b'Content-Disposition: form-data; name="image"; filename="' + b"f" * 3_000_000 + b'"', b"x")],
         400, "malformed_multipart"),
        ([(b"Content-Disposition: form-data", b"x"), IMAGE_PART], 400, "malformed_multipart"),
    ],
    ids=["40-files", "100-fields", "200kB-field", "3MB-field-name", "3MB-filename", "nameless-part"],
)
def test_multipart_abuse(live: LiveService, parts: list[tuple[bytes, bytes]], status: int, code: str) -> None:
    body, headers = _multipart(parts)
    with live.client() as c:
        resp = c.post("/v1/upscale", content=body, headers=headers)
    assert resp.status_code == status and resp.json()["error"]["code"] == code, resp.text


# ---- odd but valid: the output is right ---------------------------------------------------------


def _rgba(out: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(out)).convert("RGBA"))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_inputs_use_the_first_frame(live: LiveService, fmt: str) -> None:
    job, out = run(live, odd.animated(fmt, frames=3))
    assert "animated input: used frame 1 of 3" in job["metrics"]["notes"]
    assert job["input"]["frames"] == 3
    pixels = _rgba(out)[..., :3].reshape(-1, 3)
    assert np.abs(pixels.astype(int) - (20, 100, 200)).max() <= 3  # frame 1's colour, not frames 2/3


def test_cmyk_jpeg(live: LiveService) -> None:
    job, out = run(live, odd.pil(Image.new("CMYK", (16, 12), (0, 255, 255, 0)), "JPEG", quality=95))
    assert "CMYK input converted to RGB" in job["metrics"]["notes"]
    rgb = _rgba(out)[..., :3].reshape(-1, 3).astype(int)
    assert np.abs(rgb - (255, 0, 0)).max() < 12  # cyan 0, magenta+yellow 255 = red


def test_palette_and_grayscale(live: LiveService) -> None:
    pal = Image.fromarray(np.random.default_rng(2).integers(0, 255, (10, 12, 3), np.uint8)).quantize(16)
    job, out = run(live, odd.pil(pal, "PNG"))
    assert "palette input converted to RGB" in job["metrics"]["notes"]
    assert Image.open(io.BytesIO(out)).size == (24, 20)
    gray = Image.fromarray(np.random.default_rng(3).integers(0, 255, (10, 12), np.uint8), "L")
    job, out = run(live, odd.pil(gray, "PNG"))
    assert "grayscale input: processed as RGB" in job["metrics"]["notes"]
    rgb = _rgba(out)[..., :3].astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 1  # still gray


def test_alpha_is_upscaled_with_bicubic_and_returned(live: LiveService) -> None:
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 255, (12, 16, 4), np.uint8)
    job, out = run(live, odd.pil(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert "alpha channel upscaled with bicubic" in job["metrics"]["notes"]
    img = Image.open(io.BytesIO(out))
    assert img.mode == "RGBA" and img.size == (32, 24)
    got = np.asarray(img).astype(np.float64)
    want_alpha = np.clip(imresize(rgba[..., 3].astype(np.float64) / 255.0, scale=2.0), 0, 1) * 255
    assert np.abs(got[..., 3] - want_alpha).max() <= 1.0
    want_rgb = np.clip(imresize(rgba[..., :3].astype(np.float64) / 255.0, scale=2.0), 0, 1) * 255
    assert np.abs(got[..., :3] - want_rgb).max() <= 1.0  # model=bicubic on RGB, untouched by alpha
    job, out = run(live, odd.pil(Image.fromarray(rgba, "RGBA"), "PNG"), format="jpeg")
    assert "alpha channel dropped: JPEG has none" in job["metrics"]["notes"]


def test_exif_orientation_is_applied(live: LiveService) -> None:
    job, out = run(live, odd.with_exif_orientation(odd.halves(20, 10), 6))  # stored 20x10, shown rotated
    assert "EXIF orientation 6 applied" in job["metrics"]["notes"]
    assert job["input"]["width"] == 10 and job["input"]["height"] == 20
    rgb = _rgba(out)[..., :3].astype(int)
    assert rgb.shape[:2] == (40, 20)
    assert (rgb[2, 10] == (255, 0, 0)).all() and (rgb[-3, 10] == (0, 0, 255)).all()  # left went to the top


@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_icc_profile_is_kept(live: LiveService, fmt: str) -> None:
    icc = odd.srgb_icc()
    _job, out = run(live, odd.pil(Image.new("RGB", (10, 8), (10, 200, 30)), "PNG", icc_profile=icc), format=fmt)
    assert Image.open(io.BytesIO(out)).info.get("icc_profile") == icc


def _ihdr(png: bytes) -> tuple[int, int, int, int]:
    w, h, depth, ctype = struct.unpack(">IIBB", png[16:26])
    return w, h, depth, ctype


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_comes_back_16bit(live: LiveService, channels: int) -> None:
    arr = np.random.default_rng(6).integers(0, 65536, (10, 14, channels)).astype(np.uint16)
    job, out = run(live, odd.png16(arr))
    assert _ihdr(out) == (28, 20, 16, 2 if channels == 3 else 6)
    assert not any("8-bit" in n for n in job["metrics"]["notes"])
    values, _ = png.decode(out)
    want = np.clip(imresize(arr.astype(np.float64) / 65535.0, scale=2.0), 0, 1)
    err = np.abs(values / 65535.0 - want).max()
    assert err < 4e-4, err  # 8-bit output would be off by up to 2e-3: the low byte is real
    hi = np.asarray(Image.open(io.BytesIO(out)).convert("RGBA" if channels == 4 else "RGB"))
    assert np.array_equal(hi, (values >> 8).astype(np.uint8))  # Pillow reads the same file


def test_16bit_gray_png_comes_back_16bit(live: LiveService) -> None:
    arr = np.random.default_rng(7).integers(0, 65536, (10, 14)).astype(np.uint16)
    _job, out = run(live, odd.pil(Image.fromarray(arr), "PNG"))
    assert _ihdr(out)[2:] == (16, 0)
    back = np.asarray(Image.open(io.BytesIO(out))).astype(np.float64) / 65535.0
    want = np.clip(imresize(arr.astype(np.float64) / 65535.0, scale=2.0), 0, 1)
    assert np.abs(back - want).max() < 4e-4


def test_16bit_to_a_format_without_16_bits_says_so(live: LiveService) -> None:
    arr = np.random.default_rng(8).integers(0, 65536, (8, 8, 3)).astype(np.uint16)
    job, _ = run(live, odd.png16(arr), format="webp")
    assert "16-bit input written as 8-bit WEBP" in job["metrics"]["notes"]
