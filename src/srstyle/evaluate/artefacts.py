"""Artefact checks of a stylised image that can fail: dark blobs and high-frequency energy.

* ``dark_blob_fraction``: the share of pixels in connected blobs darker than both the painting and the
  content allow. A pixel is *unexplained dark* when its luma is below the painting's ``floor_percentile``
  (the darkest paint the style has, frame trimmed) and more than ``margin`` below the content's (blurred)
  luma at that place (where the photo is dark, dark output is content). Only regions at least ``min_width``
  pixels thick count (a binary opening): one-pixel dark lines along edges are strokes, which Gatys' own
  outputs draw too (0.30% of chelsea's pixels with The Starry Night, all of them counted as blobs before;
  0 now), while the 2-3 px dark specks of the old loss's optimum at 96 px still count. Blobs of fewer
  than ``min_blob`` pixels are noise, not droplets. The instance-norm droplets of feed-forward style networks
  (round, 10-20 px, in flat regions) are exactly such blobs.
* ``high_frequency_ratio``: the share of spectral energy of the luma at periods under ``period`` pixels,
  relative to the content's share. A 4-pixel grid (nearest-neighbour upsampling, or a loss network whose
  optimum is a grid) raises it; painterly strokes raise it too, so the check is a ratio against the content
  with a limit, not zero.

All inputs are HxWx3 float arrays in [0, 1] or uint8; torch-free.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luma01(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32)
    if rgb.dtype == np.uint8:
        x /= 255.0
    return x[..., :3] @ LUMA


def dark_floor(painting: np.ndarray, floor_percentile: float = 1.0) -> float:
    """The darkest luma the painting really uses (its ``floor_percentile``-th percentile), in [0, 1]."""
    return float(np.percentile(luma01(painting), floor_percentile))


def dark_blob_fraction(output: np.ndarray, content: np.ndarray, painting_floor: float, *, margin: float = 0.2,
                       min_blob: int = 9, min_width: int = 2, blur_sigma: float = 2.0) -> float:
    y_out, y_content = luma01(output), ndimage.gaussian_filter(luma01(content), blur_sigma)
    dark = (y_out < painting_floor) & (y_out < y_content - margin)
    if min_width > 1:
        dark = ndimage.binary_opening(dark, structure=np.ones((min_width, min_width), bool))
    labels, n = ndimage.label(dark, structure=np.ones((3, 3), bool))
    if n == 0:
        return 0.0
    sizes = np.bincount(labels.ravel())[1:]
    return float(sizes[sizes >= min_blob].sum() / dark.size)


def high_frequency_share(rgb: np.ndarray, period: float = 4.0) -> float:
    """Share of the (mean-removed, Hann-windowed) luma's spectral energy at periods under ``period`` px."""
    y = luma01(rgb)
    y = y - y.mean()
    h, w = y.shape
    y = y * np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(np.fft.rfft2(y)) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    high = np.hypot(fy, fx) > 1.0 / period
    total = float(power.sum())
    return float(power[high].sum() / total) if total > 0 else 0.0


def high_frequency_ratio(output: np.ndarray, content: np.ndarray, period: float = 4.0) -> float:
    return high_frequency_share(output, period) / max(high_frequency_share(content, period), 1e-12)


def artefact_metrics(output: np.ndarray, content: np.ndarray, painting_floor: float) -> dict[str, float]:
    return {"dark_blob_fraction": dark_blob_fraction(output, content, painting_floor),
            "high_freq_ratio": high_frequency_ratio(output, content)}
