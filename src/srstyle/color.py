"""Colour conversions, named by their convention.

* BT.601 "studio swing" (:func:`rgb_to_ycbcr_studio`): MATLAB's ``rgb2ycbcr``, Y in [16, 235] and Cb/Cr in
  [16, 240] on the 0-255 scale. Published SR PSNR tables are computed on this Y, so every metric, every
  patch and every Y-channel model in this project uses it.
* JPEG/JFIF "full range" (:func:`rgb_to_ycbcr_full`): Y in [0, 1] for RGB in [0, 1], what PIL's
  ``convert("YCbCr")`` does. Style transfer's colour preservation uses it (a perceptual operation, not a
  benchmark protocol); :mod:`srstyle.stylize` has the same conversion on torch tensors for Gatys.

The ``*_f32`` helpers are what the prediction core uses: float32, one tile at a time, so memory stays
bounded by the tile plus the uint8 output (float64 full-image buffers need >40 GB at 40 MP x4).
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

# float32 forms for uint8 RGB in (0-255) and out: matrices with the 1/255 and 255 folded in.
_RGB255_TO_YCBCR_F32 = (_RGB_TO_YCBCR / 255.0).T.astype(np.float32)
_YCBCR_TO_RGB255_F32 = (_YCBCR_TO_RGB * 255.0).T.astype(np.float32)
_OFFSET_F32 = _OFFSET.astype(np.float32)

# JPEG/JFIF full range (ITU-R BT.601 luma weights, no headroom)
_KR, _KB = 0.299, 0.114


def _as_unit_float(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float64) / 255.0
    return rgb.astype(np.float64, copy=False)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 studio luma Y (float64, 16..235) of an HxWx3 RGB image (uint8, or float in [0, 1])."""
    return _as_unit_float(rgb) @ _RGB_TO_YCBCR[0] + _OFFSET[0]


def rgb_to_ycbcr_studio(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 BT.601 studio-swing YCbCr (float64, 0-255 scale) of an RGB image (uint8, or float in [0, 1])."""
    return _as_unit_float(rgb) @ _RGB_TO_YCBCR.T + _OFFSET


def ycbcr_studio_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr_studio`: float64 RGB in [0, 1] (not clipped)."""
    return (ycbcr.astype(np.float64) - _OFFSET) @ _YCBCR_TO_RGB.T


def _mix(planes: list[np.ndarray], row: np.ndarray, offset: float, out: np.ndarray) -> np.ndarray:
    """out = sum_k planes[k] * row[k] + offset, in float32 with one temporary (numpy's matmul is slow on
    (N,3) x (3,3) float32: per-plane multiply-adds run ~3x faster)."""
    np.multiply(planes[0], row[0], out=out)
    tmp = np.empty_like(out)
    for plane, coef in zip(planes[1:], row[1:]):
        np.multiply(plane, coef, out=tmp)
        out += tmp
    out += np.float32(offset)
    return out


def rgb_to_ycbcr_studio_f32(rgb: np.ndarray, channels: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 HxWxK studio YCbCr on the 0-255 scale (K = len(channels): 0 Y, 1 Cb,
    2 Cr); the core's per-tile form."""
    planes = [rgb[..., k].astype(np.float32) for k in range(3)]
    out = np.empty((len(channels), *rgb.shape[:2]), np.float32)
    for i, c in enumerate(channels):
        _mix(planes, _RGB255_TO_YCBCR_F32[:, c], _OFFSET_F32[c], out[i])
    return out.transpose(1, 2, 0)


def ycbcr_studio_f32_to_rgb_u8(ycbcr: np.ndarray) -> np.ndarray:
    """float32 HxWx3 studio YCbCr (0-255) -> uint8 RGB, rounded half to even and clipped; ``ycbcr`` is
    used as scratch space (overwritten)."""
    planes = []
    for k in range(3):
        plane = np.ascontiguousarray(ycbcr[..., k])
        plane -= _OFFSET_F32[k]
        planes.append(plane)
    out = np.empty(ycbcr.shape, np.uint8)
    acc = np.empty(ycbcr.shape[:2], np.float32)
    for c in range(3):
        _mix(planes, _YCBCR_TO_RGB255_F32[:, c], 0.0, acc)
        np.rint(acc, out=acc)
        np.clip(acc, 0, 255, out=acc)
        out[..., c] = acc
    return out


def rgb_to_ycbcr_full(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 float RGB in [0, 1] -> JPEG full-range YCbCr in [0, 1] (float32)."""
    rgb = rgb.astype(np.float32, copy=False)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = _KR * r + (1 - _KR - _KB) * g + _KB * b
    return np.stack([y, (b - y) / (2 * (1 - _KB)) + 0.5, (r - y) / (2 * (1 - _KR)) + 0.5], -1)


def ycbcr_full_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr_full`: float32 RGB clipped to [0, 1]."""
    y, cb, cr = ycbcr[..., 0], ycbcr[..., 1], ycbcr[..., 2]
    r = y + 2 * (1 - _KR) * (cr - 0.5)
    b = y + 2 * (1 - _KB) * (cb - 0.5)
    g = (y - _KR * r - _KB * b) / (1 - _KR - _KB)
    return np.clip(np.stack([r, g, b], -1), 0, 1).astype(np.float32, copy=False)


def to_uint8(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Round-half-even and clip to uint8, as MATLAB's ``im2uint8``/``uint8`` casts do."""
    return np.clip(np.rint(x * scale), 0, 255).astype(np.uint8)


# Old names, kept only until srstyle.serving (another area) calls the prediction core instead.
rgb_to_ycbcr = rgb_to_ycbcr_studio
ycbcr_to_rgb = ycbcr_studio_to_rgb
