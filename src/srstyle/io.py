"""Safe image decoding and atomic file writes.

Decoding lives in the prediction core (:mod:`srstyle.predict.images`: allowed formats, a thread-safe
header size check, EXIF orientation, modes normalised to 8-bit RGB); :func:`load_rgb` is its file form
for project data. Every file the project writes goes through :func:`atomic_write` so a crash never leaves a
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
from PIL import Image

from .predict.images import (ALLOWED_FORMATS, DEFAULT_MAX_PIXELS, ImageError, decode_image, decode_oriented,
                             encode_image, format_for_path)
from .predict.images import open_image as _open_image
from .predict.images import to_rgb

__all__ = ["ALLOWED_FORMATS", "DEFAULT_MAX_PIXELS", "ImageError", "atomic_write", "decode_oriented", "load_rgb",
           "open_image", "read_json", "save_image", "save_png", "to_rgb", "write_json"]
_UMASK = os.umask(0)
os.umask(_UMASK)


def open_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS, formats=ALLOWED_FORMATS):
    """Open an image file lazily with the header size check (a context manager); errors name the file."""
    return _open_image(path, allowed_formats=formats, max_pixels=max_pixels)


def load_rgb(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS, formats=ALLOWED_FORMATS) -> np.ndarray:
    """Decode a project image file to HxWx3 uint8 RGB (EXIF-oriented); multi-frame files give frame 0."""
    return decode_image(path, allowed_formats=formats, max_pixels=max_pixels, allow_frames=True)


def save_image(rgb: np.ndarray, path: Path | str, quality: int = 90, png_level: int = 6) -> None:
    """Atomically write an image file, its format from the suffix (.png, .jpg/.jpeg, .webp)."""
    data = encode_image(rgb, format_for_path(path), quality=quality, png_level=png_level)
    with atomic_write(path, "wb") as f:
        f.write(data)


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
