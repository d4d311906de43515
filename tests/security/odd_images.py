"""Hostile and unusual image files made in memory: bombs, zero sizes, lying headers, polyglots,
animations, odd modes, metadata. Raw PNGs are written with zlib here, independently of srserve."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageCms

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def raw_png(width: int, height: int, depth: int, ctype: int, scanlines: bytes, extra: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, 0)
    return PNG_SIG + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(scanlines)) + chunk(b"IEND", b"")


def png16(arr: np.ndarray) -> bytes:
    """uint16 (H, W, 3|4) -> 16-bit RGB/RGBA PNG, filter 0 rows."""
    h, w, c = arr.shape
    rows = arr.astype(">u2").reshape(h, w * c).view(np.uint8)
    scan = b"".join(b"\x00" + r.tobytes() for r in rows)
    return raw_png(w, h, 16, 2 if c == 3 else 6, scan)


def pil(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def deep_png(side: int = 20_000) -> bytes:
    """A single-colour side x side grayscale PNG: ~400 MB of pixels in ~400 kB of deflate."""
    co = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    idat = b"".join(co.compress(row) for _ in range(side)) + co.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return PNG_SIG + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def inflating_tail_png() -> bytes:
    """A valid 50x40 PNG whose IDAT stream goes on inflating to ~1 GB past the image's rows."""
    co = zlib.compressobj(9)
    body = [co.compress(b"\x00" + bytes(range(150)) * 1) for _ in range(40)]
    body += [co.compress(b"\x00" * 1_000_000) for _ in range(1000)]
    idat = b"".join(body) + co.flush()
    return PNG_SIG + chunk(b"IHDR", struct.pack(">IIBBBBB", 50, 40, 8, 2, 0, 0, 0)) + chunk(b"IDAT", idat) + chunk(
        b"IEND", b""
    )


def jpeg_bomb() -> bytes:
    data = bytearray(pil(Image.new("RGB", (16, 16), (1, 2, 3)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 65000, 65000)
    return bytes(data)


def gif_bomb() -> bytes:
    data = bytearray(pil(Image.new("P", (4, 4)), "GIF"))
    struct.pack_into("<HH", data, 6, 65535, 65535)  # logical screen
    desc = data.find(b"\x2c")
    struct.pack_into("<HH", data, desc + 5, 65535, 65535)  # first image
    return bytes(data)


def webp_bomb() -> bytes:
    """A lossless WebP whose VP8L header declares 16384 x 16384."""
    data = bytearray(pil(Image.new("RGB", (4, 4)), "WEBP", lossless=True))
    base = data.find(b"VP8L") + 8
    assert data[base] == 0x2F
    (bits,) = struct.unpack("<I", data[base + 1 : base + 5])
    bits = (bits & ~((1 << 28) - 1)) | 16383 | (16383 << 14)
    struct.pack_into("<I", data, base + 1, bits)
    return bytes(data)


def zero_sized() -> dict[str, bytes]:
    gif = bytearray(pil(Image.new("P", (4, 4)), "GIF"))
    struct.pack_into("<HH", gif, 6, 0, 0)
    struct.pack_into("<HH", gif, gif.find(b"\x2c") + 5, 0, 0)
    bmp = bytearray(pil(Image.new("RGB", (4, 4)), "BMP"))
    struct.pack_into("<i", bmp, 18, 0)
    return {"png": raw_png(0, 0, 8, 2, b""), "gif": bytes(gif), "bmp": bytes(bmp)}


def animated(fmt: str, frames: int = 3) -> bytes:
    """`frames` distinct solid frames, frame i = (20 + 10 * i, 100, 200 - 9 * i)."""
    imgs = [Image.new("RGB", (12, 10), (20 + 10 * i, 100, 200 - 9 * i)) for i in range(frames)]
    params: dict[str, object] = {"save_all": True, "append_images": imgs[1:], "duration": 100, "loop": 0}
    if fmt == "WEBP":
        params["lossless"] = True
    return pil(imgs[0], fmt, **params)


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: shows which way an orientation turned it."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def with_exif_orientation(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return pil(img, "PNG", exif=exif)


def with_text_chunk(kind: bytes, body: bytes) -> bytes:
    base = pil(Image.new("RGB", (8, 8), (5, 5, 5)), "PNG")
    return base[:33] + chunk(kind, body) + base[33:]


def png_with_zip_appended() -> bytes:
    """A PNG that is also a ZIP archive (readers of each format find their own data)."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("payload.html", "<script>alert(1)</script>")
    return pil(Image.new("RGB", (10, 8), (9, 99, 199)), "PNG") + buf.getvalue()


def png_with_script_text() -> bytes:
    return with_text_chunk(b"tEXt", b"Comment\x00<script>alert(document.cookie)</script>")
