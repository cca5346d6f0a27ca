"""NIQE against the authors' MATLAB release.

Reference image: tests/data/niqe/tid2013_I04.png, a lossless copy of ResultsCalibra/dist_dir/I04.bmp that the
pyiqa wheel ships (PyPI pyiqa-0.1.16, BMP sha256 f3d68598...729e; a TID2013 distortion of a Kodak photo). pyiqa
documents the MATLAB release's NIQE of it (computequality.m, modelparameters.mat, rgb2gray input) as 3.6549
in ResultsCalibra/ResultsCalibra.md. I04 has no flat (zero-variance) pixels: on flat areas the MSCN values are
floating-point noise whose sign decides which AGGD side they count in, so images with them (I06, I03, I08,
I19 there) differ from MATLAB by 2e-4 to 0.5 depending on how the Gaussian filter rounds, in every port.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.stats import gennorm

from srstyle.evaluate import niqe as N

DATA = Path(__file__).parent / "data" / "niqe"
MATLAB_I04 = 3.6549  # MATLAB release, 4 decimals


@pytest.fixture(scope="module")
def i04() -> np.ndarray:
    return np.asarray(Image.open(DATA / "tid2013_I04.png").convert("RGB"))


def test_matches_the_matlab_release(i04):
    assert i04.shape == (384, 512, 3)
    assert N.niqe(i04, channel="gray") == pytest.approx(MATLAB_I04, abs=1e-3)


def test_pristine_model_is_the_release_model():
    mu, cov = N.pristine_model()
    assert mu.shape == (36,) and cov.shape == (36, 36)
    # the first entries of modelparameters.mat's mu_prisparam: shape and spread of the pristine MSCN AGGD
    assert mu[:2] == pytest.approx([2.60131368, 0.90570272], abs=1e-8)
    assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > 0


def test_rgb2gray_is_matlabs():
    # MATLAB documents rgb2gray as 0.2989 R + 0.5870 G + 0.1140 B, rounded for uint8 images
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]]], dtype=np.uint8)
    expected = np.round(rgb.astype(float) @ [0.2989, 0.5870, 0.1140])
    assert np.array_equal(N.rgb_to_gray(rgb), expected)


def test_gaussian_window_is_fspecial():
    w = N.gaussian_window()
    assert w.shape == (7, 7) and w.sum() == pytest.approx(1.0)
    # fspecial('gaussian', 7, 7/6): centre over edge-centre = exp(9 / (2 (7/6)^2))
    assert w[3, 3] / w[3, 0] == pytest.approx(np.exp(9 / (2 * (7 / 6) ** 2)))


@pytest.mark.parametrize("shape", [0.8, 2.0])
def test_aggd_fit_recovers_a_known_shape(shape):
    x = gennorm.rvs(shape, scale=1.3, size=200_000, random_state=np.random.default_rng(0))
    alpha, left, right = N._aggd(x)
    assert alpha == pytest.approx(shape, rel=0.03)
    assert left == pytest.approx(1.3, rel=0.03) and right == pytest.approx(1.3, rel=0.03)


def test_blur_scores_worse_than_the_photo(i04):
    y = N.to_luma(i04, "y")
    blurred = np.round(gaussian_filter(y, 2.0))
    assert N.niqe_plane(blurred) > N.niqe_plane(y) + 1.0


def test_flat_blocks_and_small_images(i04):
    y = N.to_luma(i04, "y")
    y[:96, :96] = 128.0  # one flat block: MATLAB's min over NaN picks the first shape, the score stays finite
    assert np.isfinite(N.niqe_plane(y))
    with pytest.raises(ValueError, match="96x96 block"):
        N.niqe(i04[:90, :200])
    with pytest.raises(ValueError, match="uint8"):
        N.niqe(i04.astype(np.float32))
