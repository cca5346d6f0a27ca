import numpy as np
import pytest
from PIL import Image

from srstyle.imresize import contributions, cubic, imresize


def test_cubic_kernel_is_keys_a_minus_half():
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    a = -0.5
    expected = [1.0, (a + 2) * 0.125 - (a + 3) * 0.25 + 1, 0.0, a * 3.375 - 5 * a * 2.25 + 8 * a * 1.5 - 4 * a, 0.0, 0.0]
    np.testing.assert_allclose(cubic(x), expected)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_downscale_weights_are_the_widened_kernel(factor):
    s = 1 / factor
    weights, indices = contributions(60, 60 // factor, s)
    i = 10  # an interior output pixel (0-based); MATLAB's u uses 1-based i
    u = (i + 1) / s + 0.5 * (1 - 1 / s)
    j = indices[i] + 1  # back to 1-based input positions
    expected = s * cubic(s * (u - j))
    np.testing.assert_allclose(weights[i], expected / expected.sum(), atol=1e-12)
    assert np.isclose(weights[i].sum(), 1.0) and indices[i].max() - indices[i].min() < 4 * factor  # support 4/s


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_upscale_weights_are_the_plain_kernel(factor):
    weights, indices = contributions(20, 20 * factor, factor)
    i = 30
    u = (i + 1) / factor + 0.5 * (1 - 1 / factor)
    expected = cubic(u - (indices[i] + 1))
    np.testing.assert_allclose(weights[i], expected / expected.sum(), atol=1e-12)


def test_sizes_borders_and_dtypes():
    img = np.random.default_rng(0).integers(0, 256, (31, 45, 3), dtype=np.uint8)
    out = imresize(img, 1 / 3)
    assert out.shape == (11, 15, 3) and out.dtype == np.uint8  # ceil(31/3) = 11
    assert imresize(img.astype(np.float64), 2).shape == (62, 90, 3)
    # Symmetric padding + normalised weights: a constant image stays constant, borders included.
    np.testing.assert_allclose(imresize(np.full((9, 13), 7.0), 1 / 2), 7.0)
    np.testing.assert_allclose(imresize(np.full((9, 13), 7.0), 3), 7.0)


def test_round_trips_behave_like_matlab():
    # Documented behaviour of MATLAB's bicubic imresize (cubic convolution reproduces linear functions):
    # upscaling a ramp by s samples it at u = i/s + (1 - 1/s)/2 (1-based), e.g. x2: 3.75, 4.25, ... (interior);
    ramp = np.tile(np.arange(40.0), (6, 1))
    up = imresize(ramp, 2)
    np.testing.assert_allclose(up[3, 8:16], np.arange(8, 16) / 2 - 0.25, atol=1e-12)  # 0-based: k/2 - 1/4
    # and downscaling the upscaled ramp by the same factor gives the ramp back away from the borders.
    back = imresize(up, 1 / 2)
    np.testing.assert_allclose(back[:, 6:-6], ramp[:, 6:-6], atol=1e-12)
    # A natural image survives x4 up then down closely but not exactly (bicubic is not invertible).
    from skimage.data import camera

    img = camera()[:128, :128].astype(np.float64)
    rt = imresize(imresize(img, 4), 1 / 4)
    mse = np.mean((rt[8:-8, 8:-8] - img[8:-8, 8:-8]) ** 2)
    assert 0 < mse < 4.0


def test_close_to_pil_but_not_identical():
    from skimage.data import astronaut

    img = astronaut()[:300, :300]
    ours = imresize(img, 1 / 3).astype(np.float64)
    pil = np.asarray(Image.fromarray(img).resize((100, 100), Image.Resampling.BICUBIC)).astype(np.float64)
    mse = np.mean((ours - pil) ** 2)
    assert 0 < mse < 1.0
