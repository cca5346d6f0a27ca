"""PSNR and SSIM as SR papers compute them.

Both take images on the 0-255 scale (the Y channel of BT.601 in practice) and shave ``border`` pixels
from every side first (``border = scale`` in the standard protocol). SSIM is Wang et al. 2004 as in their
MATLAB code: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, population
(co)variances, and the mean over the "valid" part of the map. It equals scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d


def shave(img: np.ndarray, border: int) -> np.ndarray:
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return img
    return img[border:-border, border:-border]


def _pair(a: np.ndarray, b: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return shave(a.astype(np.float64), border), shave(b.astype(np.float64), border)


def psnr(a: np.ndarray, b: np.ndarray, border: int = 0, data_range: float = 255.0) -> float:
    a, b = _pair(a, b, border)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian taps (the 2-D window is their outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, taps: np.ndarray) -> np.ndarray:
    r = len(taps) // 2
    out = correlate1d(correlate1d(img, taps, axis=0, mode="reflect"), taps, axis=1, mode="reflect")
    return out[r:-r, r:-r]


def ssim(a: np.ndarray, b: np.ndarray, border: int = 0, data_range: float = 255.0, size: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM of two single-channel images (Wang et al. 2004)."""
    a, b = _pair(a, b, border)
    if a.ndim != 2:
        raise ValueError(f"ssim expects a single channel (H, W), got shape {a.shape}")
    if min(a.shape) < size:
        raise ValueError(f"image {a.shape} (after shaving {border}px) is smaller than the {size}x{size} SSIM window")
    taps = gaussian_window(size, sigma)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, taps), _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a**2
    var_b = _filter_valid(b * b, taps) - mu_b**2
    cov = _filter_valid(a * b, taps) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
