"""Decoding untrusted images to uint8 RGB, and encoding results; safe to call from many threads.

* Only the allowed formats' parsers ever see the bytes (``Image.open(..., formats=...)``).
* The size declared in the header is checked against ``max_pixels`` before any pixel is decoded. The
  process-wide ``Image.MAX_IMAGE_PIXELS`` is never changed (that is not thread-safe): Pillow's own guard
  stays in force on top of ours, so caps above 2x Pillow's limit (~179 MP) cannot be granted here.
* Truncated files are errors, never grey-padded images.
* Modes are normalised: EXIF orientation applied, alpha (RGBA, LA, PA, transparent palettes) composited
  over white, palette/1-bit/grey/CMYK/YCbCr converted, 16-bit reduced to 8 bits.
* Multi-frame files (animated WebP/GIF, multi-page TIFF) are refused unless ``allow_frames`` (then the
  first frame is used).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # Pillow's default; stated because the guarantee depends on it
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
DEFAULT_MAX_PIXELS = 40_000_000
ENCODE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}

# Pillow warns (DecompressionBombWarning) between its limit and twice it; every caller here has
# checked the declared size against its own, lower cap already, so the warning says nothing new.
warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit of \d+ pixels",
                        category=Image.DecompressionBombWarning, module=r"PIL\.Image")


class ImageError(ValueError):
    """An image that cannot be used; the message names the file (or "image") and what to do."""


# What a refused file most likely is, from its first bytes: a clearer message than "cannot identify".
# (description, Pillow format name when it is an image format)
_SIGNATURES = (
    (b"GIF87a", "a GIF", "GIF"), (b"GIF89a", "a GIF", "GIF"), (b"%PDF", "a PDF document", None),
    (b"\x89PNG", "a PNG", "PNG"), (b"\xff\xd8\xff", "a JPEG", "JPEG"), (b"RIFF", "a RIFF (WebP/AVI/WAV) file", None),
    (b"BM", "a BMP", "BMP"), (b"II*\x00", "a TIFF", "TIFF"), (b"MM\x00*", "a TIFF", "TIFF"),
    (b"\x00\x00\x01\x00", "an ICO icon", "ICO"), (b"PK\x03\x04", "a ZIP archive", None), (b"\x1f\x8b", "a gzip file", None),
)


def _looks_like(head: bytes) -> tuple[str, str | None]:
    """(what the bytes look like, the Pillow format if it is an image format)."""
    for magic, what, fmt in _SIGNATURES:
        if head.startswith(magic):
            return what, fmt
    if head[:1] == b"P" and head[1:2] in b"1234567" and head[2:3] in (b" ", b"\t", b"\r", b"\n"):
        return "a PNM (PBM/PGM/PPM) image", "PPM"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "an ISO media file (HEIC/AVIF/MP4)", "HEIF"
    text = head.lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")) or b"<svg" in head.lower():
        return "an SVG/XML document", None
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page", None
    try:
        head.decode("utf-8")
        return "a text file", None
    except UnicodeDecodeError:
        return "an unknown binary file", None


def _declared_size_ok(img: Image.Image, name: str, max_pixels: int) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: image has a zero-sized dimension ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(f"{name}: declared size {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                         "(possible decompression bomb); raise the max-pixels setting only if you trust the file")


@contextlib.contextmanager
def open_image(source: bytes | Path | str, *, allowed_formats=ALLOWED_FORMATS, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int | None = None, name: str | None = None) -> Iterator[Image.Image]:
    """Open lazily (header only) with the size and format checks; ``allowed_formats=None``: any format."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "image"
        size = len(data)
        fp: io.BufferedIOBase | io.BytesIO = io.BytesIO(data)
    else:
        path = Path(source)
        name = name or str(path)
        if not path.is_file():
            raise ImageError(f"{name}: no such file" if not path.exists() else f"{name}: not a regular file")
        size = path.stat().st_size
        fp = None  # opened below, after the size checks
    if size == 0:
        raise ImageError(f"{name}: file is empty (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        raise ImageError(f"{name}: {size} bytes is over the {max_bytes}-byte limit")
    formats = None if allowed_formats is None else [f.upper() for f in allowed_formats]
    with contextlib.ExitStack() as stack:
        if fp is None:
            fp = stack.enter_context(open(path, "rb"))
        head = fp.read(64)
        fp.seek(0)
        try:
            img = Image.open(fp, formats=formats)
        except UnidentifiedImageError:
            what, fmt = _looks_like(head)
            accepted = ", ".join(formats or ["any Pillow format"])
            if fmt is not None and formats is not None and fmt not in formats:
                raise ImageError(f"{name}: image format not accepted (it looks like {what}); send one of {accepted}") from None
            raise ImageError(f"{name}: not a recognised image (it looks like {what}); send one of {accepted}") from None
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{name}: declared size exceeds the limit of {max_pixels} pixels and Pillow's own "
                             f"({exc}); possible decompression bomb, not decoded") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"{name}: cannot read the image header: {exc}") from None
        stack.enter_context(img)
        _declared_size_ok(img, name, max_pixels)
        yield img


def decode_oriented(img: Image.Image, name: str) -> Image.Image:
    """Fully decode (so truncation is detected) and apply the EXIF orientation tag."""
    try:
        img.load()
        return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name}: image data is corrupt or truncated: {exc}") from None


def to_rgb(img: Image.Image, name: str) -> Image.Image:
    """Normalise a decoded image to 8-bit RGB: alpha over white, 16-bit to 8-bit, other modes converted."""
    mode = img.mode
    if mode == "RGB":
        return img
    try:
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            arr = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
            return Image.fromarray((arr >> 8).astype(np.uint8)).convert("RGB")
        if mode == "F":
            arr = np.asarray(img, dtype=np.float32)
            arr = arr * 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else arr  # [0,1] floats or 0-255
            return Image.fromarray(np.clip(np.nan_to_num(np.rint(arr)), 0, 255).astype(np.uint8)).convert("RGB")
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info) \
                or (mode in ("L", "RGB", "1") and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"{name}: cannot convert mode {mode} to RGB: {exc}") from None


def decode_image(source: bytes | Path | str, *, allowed_formats=ALLOWED_FORMATS, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int | None = None, name: str | None = None, allow_frames: bool = False) -> np.ndarray:
    """Bytes or a file -> HxWx3 uint8 RGB (EXIF orientation applied); :class:`ImageError` otherwise."""
    with open_image(source, allowed_formats=allowed_formats, max_pixels=max_pixels, max_bytes=max_bytes,
                    name=name) as img:
        label = name or ("image" if isinstance(source, (bytes, bytearray, memoryview)) else str(source))
        frames = getattr(img, "n_frames", 1)
        if frames > 1 and not allow_frames:
            raise ImageError(f"{label}: has {frames} frames (an animation or multi-page file); give a still image "
                             "(extract one frame first)")
        rgb = np.asarray(to_rgb(decode_oriented(img, label), label))
    if rgb.shape[0] * rgb.shape[1] > max_pixels:  # a lying header (never seen, but cheap to make sure)
        raise ImageError(f"{label}: decoded size {rgb.shape[1]}x{rgb.shape[0]} exceeds the limit of {max_pixels}")
    return rgb


def encode_image(rgb: np.ndarray, fmt: str = "png", quality: int = 90, png_level: int = 1) -> bytes:
    """HxWx3 uint8 RGB -> PNG (``png_level`` 0-9; 1 is ~10x faster than Pillow's default 6 on photos, a few
    % larger), JPEG or WebP (``quality`` 1-100) bytes."""
    key = fmt.lower()
    if key not in ENCODE_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; choose one of png, jpeg, webp")
    if not 1 <= quality <= 100 or not 0 <= png_level <= 9:
        raise ValueError(f"quality must be 1-100 and png_level 0-9 (got {quality}, {png_level})")
    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    pil_fmt = ENCODE_FORMATS[key]
    if pil_fmt == "PNG":
        img.save(buf, format="PNG", compress_level=png_level)
    elif pil_fmt == "JPEG":
        img.save(buf, format="JPEG", quality=quality)
    else:
        img.save(buf, format="WEBP", quality=quality, method=4)
    return buf.getvalue()


def format_for_path(path: Path | str) -> str:
    """The encode format for an output file name (.png, .jpg/.jpeg, .webp); ValueError otherwise."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in ENCODE_FORMATS:
        raise ValueError(f"output {path}: unknown image type {Path(path).suffix!r}; use .png, .jpg or .webp")
    return suffix


def same_file(a: Path | str, b: Path | str) -> bool:
    """True when ``b`` names the file ``a`` (after resolving links, or the same inode)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()
