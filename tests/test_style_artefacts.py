"""The style artefact checks (dark blobs, energy at periods under 4 px) and the painting-frame trim: each
fires on the defect it names and stays quiet on a clean image."""

import numpy as np
import pytest

from srstyle.evaluate.artefacts import dark_blob_fraction, dark_floor, high_frequency_ratio, high_frequency_share
from srstyle.painting_frame import frame_box, trim_frame


def _smooth_photo(h=96, w=128, seed=0):
    """A smooth, mid-grey 'photo' (low-pass noise), RGB uint8."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(90, 170, (h // 16 + 1, w // 16 + 1, 3))
    yy, xx = np.linspace(0, small.shape[0] - 1, h), np.linspace(0, small.shape[1] - 1, w)
    rows = np.stack([np.interp(yy, np.arange(small.shape[0]), small[:, x, c]) for x in range(small.shape[1])
                     for c in range(3)], 1).reshape(h, small.shape[1], 3)
    img = np.stack([np.interp(xx, np.arange(small.shape[1]), rows[y, :, c]) for y in range(h) for c in range(3)], 1)
    return img.T.reshape(h, 3, w).transpose(0, 2, 1).round().astype(np.uint8)


def test_a_dark_droplet_is_counted_and_dark_content_is_not():
    content = _smooth_photo()
    out = content.copy()
    yy, xx = np.mgrid[:96, :128]
    drop = (yy - 40) ** 2 + (xx - 60) ** 2 <= 6 ** 2          # a round blob of ~113 px
    out[drop] = 5
    assert dark_blob_fraction(out, content, painting_floor=0.1) == pytest.approx(drop.mean(), rel=0.05)
    assert dark_blob_fraction(content, content, painting_floor=0.1) == 0.0
    dark_content = content.copy()
    dark_content[drop] = 5                                    # the photo is dark there: dark output is content
    assert dark_blob_fraction(out, dark_content, painting_floor=0.1, blur_sigma=0.0) == 0.0
    assert dark_blob_fraction(out, content, painting_floor=0.01) == 0.0   # the painting has that black
    specks = content.copy()
    specks[::10, ::10] = 0                                    # isolated pixels are noise, not droplets
    assert dark_blob_fraction(specks, content, painting_floor=0.1) == 0.0


def test_a_one_pixel_dark_stroke_is_not_a_blob_but_a_thicker_one_is():
    """One-pixel outline strokes (Gatys draws them along a cat's eyes) are style; a region 2+ px thick counts."""
    content = _smooth_photo()
    for width, counted in ((1, False), (2, True), (3, True), (6, True)):
        out = content.copy()
        out[30:30 + width, 20:100] = 5                        # an 80 px long dark line
        got = dark_blob_fraction(out, content, painting_floor=0.1)
        assert (got > 0) == counted, (width, got)
        if counted:
            assert got == pytest.approx(80 * width / content[..., 0].size, rel=0.05)
    out = content.copy()
    out[30, 20:100] = 5
    assert dark_blob_fraction(out, content, painting_floor=0.1, min_width=1) > 0   # the opening is a choice


def test_a_four_pixel_grid_raises_the_high_frequency_ratio_and_blur_lowers_it():
    content = _smooth_photo().astype(np.float32)
    yy, xx = np.mgrid[:96, :128]
    grid = content + 25.0 * (((yy // 2) + (xx // 2)) % 2)[..., None]   # period 4 px
    assert high_frequency_ratio(grid.clip(0, 255).astype(np.uint8), content.astype(np.uint8)) > 5
    assert high_frequency_ratio(content.astype(np.uint8), content.astype(np.uint8)) == pytest.approx(1.0)
    assert 0.0 <= high_frequency_share(content.astype(np.uint8)) < 0.05


def test_the_painting_floor_is_its_darkest_paint():
    painting = np.full((50, 50, 3), 200, np.uint8)
    painting[:10] = 20
    assert dark_floor(painting) == pytest.approx(20 / 255, abs=1e-3)


def test_a_dark_frame_and_a_white_strip_are_trimmed_and_dark_paint_is_kept():
    rng = np.random.default_rng(1)
    paint = rng.integers(60, 200, (200, 160, 3), dtype=np.uint8)
    framed = np.pad(paint, ((6, 6), (5, 7), (0, 0)), constant_values=3)
    top, bottom, left, right = frame_box(framed)
    assert (top, bottom, left, right) == (7, 205, 6, 164)      # the frame plus the blended edge line
    assert trim_frame(framed).shape == (198, 158, 3)
    strip = np.concatenate([paint, np.full((4, 160, 3), 250, np.uint8)])
    assert trim_frame(strip).shape == (199, 160, 3)
    dark_paint = paint.copy()
    dark_paint[:, :30] = 10                                   # a dark cypress at the left edge, not a frame
    dark_paint[::3, :30] = 120
    assert trim_frame(dark_paint).shape == paint.shape
    assert trim_frame(paint).shape == paint.shape


def test_the_embedded_starry_night_loses_its_black_border():
    from srstyle.data.style_data import embedded_styles_dir
    from srstyle.io import load_rgb

    rgb = load_rgb(embedded_styles_dir() / "starry_night.jpg")
    luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    trimmed = trim_frame(rgb)
    t_luma = trimmed.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert (luma <= 5).mean() > 0.04 and (t_luma <= 5).mean() < 0.005
    assert trimmed.shape[0] >= rgb.shape[0] - 16 and trimmed.shape[1] >= rgb.shape[1] - 16
