import numpy as np

from srstyle.color import rgb_to_y, rgb_to_ycbcr_studio as rgb_to_ycbcr, to_uint8, ycbcr_studio_to_rgb as ycbcr_to_rgb


def test_y_constants_are_bt601_studio_swing():
    # Y = 16 + 65.481 R + 128.553 G + 24.966 B with RGB in [0, 1].
    assert rgb_to_y(np.array([[[0, 0, 0]]], np.uint8))[0, 0] == 16.0
    assert np.isclose(rgb_to_y(np.array([[[255, 255, 255]]], np.uint8))[0, 0], 235.0)
    assert np.isclose(rgb_to_y(np.array([[[255, 0, 0]]], np.uint8))[0, 0], 16 + 65.481)
    assert np.isclose(rgb_to_y(np.array([[[0, 255, 0]]], np.uint8))[0, 0], 16 + 128.553)
    assert np.isclose(rgb_to_y(np.array([[[0, 0, 255]]], np.uint8))[0, 0], 16 + 24.966)
    assert np.isclose(rgb_to_y(np.array([[[0.5, 0.25, 1.0]]]))[0, 0], 16 + 65.481 * 0.5 + 128.553 * 0.25 + 24.966)


def test_chroma_range_and_round_trip():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    ycc = rgb_to_ycbcr(rgb)
    assert ycc[..., 0].min() >= 16 and ycc[..., 0].max() <= 235
    assert ycc[..., 1:].min() >= 16 and ycc[..., 1:].max() <= 240
    np.testing.assert_array_equal(to_uint8(ycbcr_to_rgb(ycc), 255.0), rgb)


def test_differs_from_pil_full_range_luma():
    from PIL import Image

    rgb = np.full((2, 2, 3), 200, np.uint8)
    pil_y = np.asarray(Image.fromarray(rgb).convert("YCbCr"))[..., 0]
    assert pil_y[0, 0] == 200  # full range: gray stays gray
    assert round(rgb_to_y(rgb)[0, 0]) == 188  # studio swing: 16 + 219 * 200/255
