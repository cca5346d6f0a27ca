"""Resampling used to make LR images and bicubic baselines.

PIL's bicubic (a = -0.5, antialiased when downscaling) is what this project uses: it matches MATLAB's
``imresize`` within about 0.01 dB on the bicubic baseline. OpenCV's INTER_CUBIC (a = -0.75, no antialias)
does not, and must never be used to make LR images.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of ``scale`` (the SR convention)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def bicubic_rgb(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 image with PIL bicubic to (height, width)."""
    h, w = size_hw
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BICUBIC))


def bicubic_float(channel: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize one float channel (no 8-bit rounding) with PIL bicubic to (height, width)."""
    h, w = size_hw
    img = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32))  # 2-D float32: mode "F"
    return np.asarray(img.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)


def downscale_rgb(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR image of a mod-cropped HR image: bicubic, antialiased, exactly 1/scale of its size."""
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"image size {w}x{h} is not a multiple of scale {scale}; modcrop it first")
    return bicubic_rgb(hr, (h // scale, w // scale))
