import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from srstyle.evaluate.metrics import gaussian_window, psnr, ssim


def test_psnr_hand_computed():
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    b[0, 0] = 16.0  # MSE = 256 / 16 = 16
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 16))
    assert psnr(a, a) == math.inf


def test_psnr_border_is_shaved():
    a = np.zeros((10, 10))
    b = np.zeros((10, 10))
    b[:2, :] = 100.0  # errors only in the top two rows
    assert psnr(a, b, border=2) == math.inf
    assert psnr(a, b, border=1) == pytest.approx(10 * math.log10(255**2 / (100.0**2 * 8 / 64)))


@pytest.mark.parametrize("border", [0, 2, 3, 4])
def test_ssim_matches_scikit_image(border):
    rng = np.random.default_rng(1)
    a = rng.uniform(16, 235, (60, 70))
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255)
    crop = (slice(border, -border or None),) * 2
    expected = structural_similarity(
        a[crop], b[crop], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(a, b, border=border) == pytest.approx(expected, abs=1e-12)


def test_ssim_identical_and_window():
    a = np.random.default_rng(2).uniform(0, 255, (32, 32))
    assert ssim(a, a) == pytest.approx(1.0)
    w = gaussian_window(11, 1.5)
    assert len(w) == 11 and w.sum() == pytest.approx(1.0) and w[5] == w.max()


def test_ssim_rejects_tiny_and_mismatched():
    with pytest.raises(ValueError, match="smaller than"):
        ssim(np.zeros((12, 12)), np.zeros((12, 12)), border=2)
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
