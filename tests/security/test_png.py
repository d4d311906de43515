"""srserve.png: 16-bit colour PNG read/write (which Pillow cannot do) against PNGs filtered here with every
filter type and interlaced, cross-checked with Pillow's 8-bit reading of the same files; the fast writer
of every result PNG, read back by Pillow and by our decoder."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from srserve import imaging, png
from tests.security import odd_images as odd


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _filter(sub: np.ndarray, types: list[int]) -> bytes:
    """PNG-filter (spec 9.2) the big-endian bytes of a uint16 (h, w, c) image, row y with types[y]."""
    h, w, c = sub.shape
    bpp = 2 * c
    raw = sub.astype(">u2").reshape(h, w * c).view(np.uint8).reshape(h, w, bpp).astype(np.int32)
    out = []
    for y in range(h):
        x = raw[y]
        up = raw[y - 1] if y else np.zeros_like(x)
        left = np.vstack([np.zeros((1, bpp), np.int32), x[:-1]])
        upleft = np.vstack([np.zeros((1, bpp), np.int32), up[:-1]])
        pred = [np.zeros_like(x), left, up, (left + up) >> 1, _paeth(left, up, upleft)][types[y % len(types)]]
        out.append(bytes([types[y % len(types)]]) + ((x - pred) & 0xFF).astype(np.uint8).tobytes())
    return b"".join(out)


def _png(arr: np.ndarray, types: list[int], interlace: bool = False) -> bytes:
    h, w, c = arr.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    if not interlace:
        data = _filter(arr, types)
    else:
        data = b"".join(_filter(arr[y0::dy, x0::dx], types) for x0, y0, dx, dy in png._ADAM7
                        if arr[y0::dy, x0::dx].size)
    ihdr = np.array([w, h], ">u4").tobytes() + bytes([16, ctype, 0, 0, 1 if interlace else 0])
    return odd.PNG_SIG + odd.chunk(b"IHDR", ihdr) + odd.chunk(b"IDAT", zlib.compress(data)) + odd.chunk(b"IEND", b"")


@pytest.mark.parametrize("types", [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4], [4, 3, 1]])
@pytest.mark.parametrize("channels", [3, 4, 2])
@pytest.mark.parametrize("interlace", [False, True])
def test_decode_every_filter(types: list[int], channels: int, interlace: bool) -> None:
    rng = np.random.default_rng(len(types) * 10 + channels)
    arr = rng.integers(0, 65536, (13, 17, channels)).astype(np.uint16)
    data = _png(arr, types, interlace)
    values, _ = png.decode(data)
    assert np.array_equal(values, arr)
    if channels != 2:  # Pillow reads LA;16 differently; for RGB(A) it keeps the high byte
        mode = "RGB" if channels == 3 else "RGBA"
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert(mode)), (arr >> 8).astype(np.uint8))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(9, 11), (1, 1), (1, 7), (5, 1)])
def test_encode_round_trip(channels: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(channels)
    arr16 = rng.integers(0, 65536, (*shape, channels)).astype(np.uint16)
    assert np.array_equal(png.decode(png.encode_samples(arr16))[0], arr16)
    arr8 = rng.integers(0, 256, (*shape, channels)).astype(np.uint8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    img = Image.open(io.BytesIO(png.encode_samples(arr8)))
    assert img.mode == mode and img.size == shape[::-1]
    assert np.array_equal(np.asarray(img).reshape(arr8.shape), arr8)


def test_encode_keeps_the_icc_profile_and_refuses_other_samples() -> None:
    icc = odd.srgb_icc()
    img = Image.open(io.BytesIO(png.encode_samples(np.zeros((3, 4, 3), np.uint8), icc)))
    assert img.info["icc_profile"] == icc
    with pytest.raises(ValueError, match="float32"):
        png.encode_samples(np.zeros((3, 4, 3), np.float32))
    with pytest.raises(ValueError, match="5 channels"):
        png.encode_samples(np.zeros((3, 4, 5), np.uint8))


def test_encode_of_an_upscaled_image_is_close_to_pillows_size(data_dir: Path) -> None:
    """Run-length deflate of Up-filtered rows on an upscaled image (what every result is) against Pillow's
    level 1 (adaptive filters, match search): the same pixels in a file at most 15% larger."""
    lr = Image.open(data_dir / "eval" / "Set14" / "x4" / "img_001_LR.png").convert("RGB")
    up = np.asarray(lr.resize((lr.width * 4, lr.height * 4), Image.Resampling.BICUBIC))
    ours = png.encode_samples(up)
    theirs = io.BytesIO()
    Image.fromarray(up).save(theirs, format="PNG", compress_level=1)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(ours))), up)
    assert len(ours) <= 1.15 * len(theirs.getvalue())


def test_imaging_decode_keeps_16_bits_and_orientation() -> None:
    arr = np.random.default_rng(2).integers(0, 65536, (6, 10, 3)).astype(np.uint16)
    decoded = imaging.decode(_png(arr, [4]), 10**6)
    assert decoded.bit_depth == 16 and decoded.alpha is None
    assert np.allclose(decoded.rgb * 65535.0, arr, atol=0.01)
    for orientation in range(1, 9):
        turned = png.orient(arr, orientation)
        pil = Image.fromarray((arr >> 8).astype(np.uint8))
        exif = Image.Exif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        pil.save(buf, "PNG", exif=exif)
        want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
        assert np.array_equal((turned >> 8).astype(np.uint8), want), orientation


def test_corrupt_16bit_png_is_a_clear_error() -> None:
    arr = np.random.default_rng(3).integers(0, 65536, (8, 8, 3)).astype(np.uint16)
    scan = _filter(arr, [1])
    ihdr = np.array([8, 8], ">u4").tobytes() + bytes([16, 2, 0, 0, 0])
    idat = odd.chunk(b"IDAT", zlib.compress(scan)[:60])
    cut = odd.PNG_SIG + odd.chunk(b"IHDR", ihdr) + idat + odd.chunk(b"IEND", b"")
    with pytest.raises(png.PngError, match="truncated"):
        png.decode(cut)
    with pytest.raises(imaging.ImageError):
        imaging.decode(cut, 10**6)
    bad = bytearray(scan)
    bad[0] = 9
    with pytest.raises(png.PngError, match="filter type"):
        png.decode(odd.raw_png(8, 8, 16, 2, bytes(bad)))
