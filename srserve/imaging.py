"""Image decode/encode with limits, shared by the service (validation), the worker, training and tests.

Pure functions over bytes and numpy arrays: no torch, no FastAPI, no Redis. Images travel as
float32 RGB arrays in [0, 1] (H, W, 3) plus an optional alpha plane, so 8- and 16-bit inputs share
one path and the encoder decides the output bit depth.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from srserve import png

# Pillow's own bomb guard raises DecompressionBombError at 2x this; we enforce our configurable
# limit before decoding, so switch Pillow's global off and never decode without probing first.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

OUTPUT_FORMATS: dict[str, tuple[str, str]] = {
    # name -> (Pillow format, content type)
    "png": ("PNG", "image/png"),
    "webp": ("WEBP", "image/webp"),
    "jpeg": ("JPEG", "image/jpeg"),
}
INPUT_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})


class ImageError(ValueError):
    """An input that cannot be used; `code` is stable and goes into the API's error JSON."""

    code = "invalid_image"
    http_status = 422

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAnImageError(ImageError):
    code = "not_an_image"


class CorruptImageError(ImageError):
    code = "corrupt_image"


class MetadataTooLargeError(ImageError):
    code = "metadata_too_large"  # a text/metadata chunk inflating past Pillow's safety limit


class ImageTooLargeError(ImageError):
    code = "image_too_large"
    http_status = 413


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, read without decoding pixel data."""

    width: int
    height: int
    mode: str
    format: str
    n_frames: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass
class DecodedImage:
    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1]
    alpha: np.ndarray | None  # float32 (H, W) in [0, 1] or None
    bit_depth: int  # 8 or 16: what the source carried per channel
    source_format: str
    icc_profile: bytes | None = None
    notes: list[str] = field(default_factory=list)  # conversions applied, reported in the job JSON

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def probe(data: bytes) -> ImageInfo:
    """Read the header only. Raises NotAnImageError for anything Pillow cannot identify."""
    if not data:
        raise NotAnImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if "decompressed data too large" in str(exc).lower():  # Pillow's cap on compressed text chunks
            raise MetadataTooLargeError("a metadata chunk of the image is over the size limit") from exc
        raise NotAnImageError("the file is not an image in a supported format") from exc
    if img.format not in INPUT_FORMATS:
        raise NotAnImageError(f"image format {img.format} is not supported")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"the image declares an empty size {width}x{height}")
    return ImageInfo(width, height, img.mode, str(img.format), int(getattr(img, "n_frames", 1)))


def check_pixels(info: ImageInfo, max_pixels: int, what: str = "image") -> None:
    if info.pixels > max_pixels:
        raise ImageTooLargeError(
            f"{what} is {info.width}x{info.height} = {info.pixels} pixels, over the limit of {max_pixels}"
        )


def decode(data: bytes, max_pixels: int) -> DecodedImage:
    """Decode to float RGB (+ alpha), applying EXIF orientation; refuses over-limit sizes unread."""
    info = probe(data)
    check_pixels(info, max_pixels)
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            if info.n_frames > 1:
                notes.append(f"animated input: used frame 1 of {info.n_frames}")
                img.seek(0)
            img.load()
            icc = img.info.get("icc_profile")
            # exif_transpose copies even without a tag (Pillow >= 11): look at the tag itself
            orientation = img.getexif().get(0x0112, 1)
            if orientation not in (None, 1):
                img = ImageOps.exif_transpose(img)
                notes.append(f"EXIF orientation {orientation} applied")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise CorruptImageError(f"the image data is truncated or corrupt ({exc})") from exc
    icc = icc if isinstance(icc, bytes) else None
    if info.format == "PNG" and info.n_frames == 1 and png.is_deep_colour(data):
        return _decode_png16(data, info, icc, orientation or 1, notes)
    return _to_arrays(img, info, icc, notes)


def _decode_png16(data: bytes, info: ImageInfo, icc: bytes | None, orientation: int, notes: list[str]) -> DecodedImage:
    """16-bit RGB(A)/gray+alpha PNG at full precision (Pillow would keep only the high byte)."""
    try:
        values, ctype = png.decode(data)
    except png.PngError as exc:
        raise CorruptImageError(f"the image data is truncated or corrupt ({exc})") from exc
    arr = png.orient(values.astype(np.float32) / 65535.0, orientation)
    if ctype == 4:  # gray + alpha
        rgb, alpha = np.repeat(arr[..., :1], 3, axis=2), arr[..., 1]
        notes.append("grayscale input: processed as RGB")
    else:
        rgb, alpha = arr[..., :3], (arr[..., 3] if ctype == 6 else None)
    return DecodedImage(
        np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha), 16, info.format, icc, notes
    )


def _to_arrays(img: Image.Image, info: ImageInfo, icc: bytes | None, notes: list[str]) -> DecodedImage:
    mode = img.mode
    alpha: np.ndarray | None = None
    bit_depth = 8
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit int) grayscale: keep the precision, scale by the mode's range
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        bit_depth = 16 if peak > 255 else 8
        gray = np.clip(arr / peak, 0.0, 1.0)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        notes.append("grayscale input: processed as RGB")
    elif mode == "F":
        gray = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        notes.append("float grayscale input: processed as RGB")
    else:
        if mode == "CMYK":
            img = img.convert("RGB")
            notes.append("CMYK input converted to RGB")
        elif mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            notes.append("palette input converted to RGB")
        elif mode in ("L", "1"):
            img = img.convert("RGB")
            notes.append("grayscale input: processed as RGB")
        elif mode == "LA":
            img = img.convert("RGBA")
            notes.append("grayscale input: processed as RGB")
        elif mode not in ("RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in mode else "RGB")
            notes.append(f"{mode} input converted to RGB")
        arr = np.asarray(img, dtype=np.float32) / 255.0
        rgb = arr[..., :3]
        if arr.shape[2] == 4:
            alpha = arr[..., 3]
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    return DecodedImage(rgb, alpha, bit_depth, info.format, icc, notes)


def from_uint8(rgb: np.ndarray) -> DecodedImage:
    """Wrap an 8-bit RGB array (tests, evaluation) as a DecodedImage."""
    return DecodedImage(rgb.astype(np.float32) / 255.0, None, 8, "array")


def load_rgb_uint8(path: str) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3): evaluation sets and training data."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 with rounding: the 8-bit output every metric is measured on. uint8 comes back
    as it is (the engine rounds 8-bit results on the device, the same way)."""
    if rgb.dtype == np.uint8:
        return rgb
    scaled = rgb * 255.0  # the one temporary: rounding and clipping happen in it
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def _to_uint16(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 65535.0), 0, 65535).astype(np.uint16)


def keeps_16_bits(fmt: str, bit_depth: int) -> bool:
    """Whether a result in `fmt` of an input with `bit_depth` bits is written with 16 bits (PNG only);
    every other result is encoded, and measured, from 8 bits."""
    return fmt == "png" and bit_depth == 16


def _png_samples(rgb: np.ndarray, alpha: np.ndarray | None, bit_depth: int) -> np.ndarray:
    """(H, W, C) samples of a result PNG: 8 or 16 bits as the input had; a 16-bit gray image stays gray."""
    if not keeps_16_bits("png", bit_depth):
        rgb8 = to_uint8(rgb)
        return rgb8 if alpha is None else np.dstack([rgb8, to_uint8(alpha)])
    rgb16 = _to_uint16(rgb)
    if alpha is not None:
        return np.dstack([rgb16, _to_uint16(alpha)])
    gray = np.array_equal(rgb16[..., 0], rgb16[..., 1]) and np.array_equal(rgb16[..., 1], rgb16[..., 2])
    return rgb16[..., :1] if gray else rgb16


def encode(
    rgb: np.ndarray,
    fmt: str,
    *,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    icc_profile: bytes | None = None,
    quality: int = 95,
) -> tuple[bytes, list[str]]:
    """Encode float RGB [0, 1] (+ alpha); returns the bytes and notes on what was converted."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}")
    pil_format, _ = OUTPUT_FORMATS[fmt]
    notes: list[str] = []
    params: dict[str, object] = {}
    if icc_profile:
        params["icc_profile"] = icc_profile
    if fmt == "png":  # srserve.png: writes 16-bit colour, which Pillow cannot, and 2-3x faster than Pillow
        return png.encode_samples(_png_samples(rgb, alpha, bit_depth), icc_profile), notes
    if bit_depth == 16:
        notes.append(f"16-bit input written as 8-bit {fmt.upper()}")
    rgb8 = to_uint8(rgb)
    if alpha is not None:
        if fmt == "jpeg":
            notes.append("alpha channel dropped: JPEG has none")
            img = Image.fromarray(rgb8, "RGB")
        else:
            img = Image.fromarray(np.dstack([rgb8, to_uint8(alpha)]), "RGBA")
    else:
        img = Image.fromarray(rgb8, "RGB")
    params["quality"] = quality
    buf = io.BytesIO()
    img.save(buf, format=pil_format, **params)
    return buf.getvalue(), notes


def content_type(fmt: str) -> str:
    return OUTPUT_FORMATS[fmt][1]
