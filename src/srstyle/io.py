"""Safe image decoding and atomic file writes.

Every image the project reads from a user goes through :func:`load_rgb`: the declared size is checked
before any pixel is decoded (decompression bombs), EXIF orientation is applied, and modes are normalised
to 8-bit RGB. Every file the project writes goes through :func:`atomic_write` so a crash never leaves a
half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# A truncated file is an error, never a silently grey-padded image.
ImageFile.LOAD_TRUNCATED_IMAGES = False
DEFAULT_MAX_PIXELS = 40_000_000
_UMASK = os.umask(0)
os.umask(_UMASK)


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file and what to do."""


def _check_declared_size(img: Image.Image, path: Path | str, max_pixels: int) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{path}: image has a zero-sized dimension ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(
            f"{path}: declared size {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
            "(possible decompression bomb); raise the max_pixels setting only if you trust the file"
        )


@contextlib.contextmanager
def open_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Image.Image]:
    """Open an image lazily, with a size check on the header only; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: file is empty (0 bytes)")
    # PIL's own bomb guard fires only at 2x its limit; ours is explicit and checked first.
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        try:
            img = Image.open(path)
        except UnidentifiedImageError:
            raise ImageError(f"{path}: not a recognised image file (PNG, JPEG, BMP, TIFF, WebP)") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{path}: cannot read image header: {exc}") from None
        with img:
            _check_declared_size(img, path, max_pixels)
            yield img
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def decode_oriented(img: Image.Image, path: Path | str) -> Image.Image:
    """Fully decode (so truncation is detected) and apply the EXIF orientation tag."""
    try:
        img.load()
        return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: image data is corrupt or truncated: {exc}") from None


def to_rgb(img: Image.Image, path: Path | str) -> Image.Image:
    """Normalise a decoded image to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.uint32)
        return Image.fromarray((arr >> 8).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"{path}: cannot convert mode {img.mode} to RGB: {exc}") from None


def load_rgb(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 RGB array, oriented per EXIF."""
    with open_image(path, max_pixels) as img:
        return np.asarray(to_rgb(decode_oriented(img, path), path))


def save_png(rgb: np.ndarray, path: Path | str) -> None:
    with atomic_write(path, "wb") as f:
        Image.fromarray(rgb).save(f, format="PNG")


@contextlib.contextmanager
def atomic_write(path: Path | str, mode: str = "w", **kwargs) -> Iterator:
    """Write to a temporary file beside ``path`` and rename it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file ordinary permissions
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(obj, path: Path | str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")


def read_json(path: Path | str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
