"""RGB <-> YCbCr in the ITU-R BT.601 "studio swing" convention used by super-resolution papers.

This is MATLAB's ``rgb2ycbcr``: Y lies in [16, 235] and Cb/Cr in [16, 240] on the 0-255 scale.
PIL's ``convert("YCbCr")`` is the full-range JPEG variant instead; published PSNR tables are computed
on this one, so every metric and every patch in this project goes through these functions.
"""

from __future__ import annotations

import numpy as np

# Rows: Y, Cb, Cr. Inputs are RGB in [0, 1]; outputs on the 0-255 scale.
_RGB_TO_YCBCR = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=np.float64,
)
_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def _as_unit_float(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float64) / 255.0
    return rgb.astype(np.float64, copy=False)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Luma Y (float64, 16..235) of an HxWx3 RGB image (uint8, or float in [0, 1])."""
    return _as_unit_float(rgb) @ _RGB_TO_YCBCR[0] + _OFFSET[0]


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 YCbCr (float64, 0-255 scale) of an RGB image (uint8, or float in [0, 1])."""
    return _as_unit_float(rgb) @ _RGB_TO_YCBCR.T + _OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`: float64 RGB in [0, 1] (not clipped)."""
    return (ycbcr.astype(np.float64) - _OFFSET) @ _YCBCR_TO_RGB.T


def to_uint8(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Round-half-even and clip to uint8, as MATLAB's ``im2uint8``/``uint8`` casts do."""
    return np.clip(np.rint(x * scale), 0, 255).astype(np.uint8)
