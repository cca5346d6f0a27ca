"""The prediction core (srstyle.predict): torch-free, uint8 RGB in and out, equal to the reference paths."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import skimage.data

from srstyle.color import rgb_to_ycbcr_studio, to_uint8, ycbcr_studio_to_rgb
from srstyle.export.onnx import export_sr_onnx
from srstyle.inference import _torch_model
from srstyle.predict import ImageError, SRPredictor
from srstyle.resize import bicubic_float, downscale_rgb, modcrop
from tests.helpers import fit_briefly, photo, trained_espcn

PHOTOS = {"astronaut": skimage.data.astronaut, "coffee": skimage.data.coffee, "chelsea": skimage.data.chelsea}


def reference_upscale(run, scale: int, color: str, rgb: np.ndarray) -> np.ndarray:
    """The path the core replaced: whole image, float64 YCbCr buffers, chroma bicubic over the full image."""
    h, w = rgb.shape[:2]
    size = (h * scale, w * scale)
    if color == "rgb":
        x = rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        return to_uint8(run(x)[0].transpose(1, 2, 0), 255.0)
    ycc = rgb_to_ycbcr_studio(rgb)
    out = np.empty((*size, 3), np.float64)
    out[..., 0] = run((ycc[..., 0].astype(np.float32) / 255.0)[None, None])[0, 0] * 255.0
    out[..., 1] = bicubic_float(ycc[..., 1], size)
    out[..., 2] = bicubic_float(ycc[..., 2], size)
    return to_uint8(ycbcr_studio_to_rgb(out), 255.0)


@pytest.fixture(scope="module")
def espcn(tmp_path_factory):
    """A briefly trained ESPCN x3 (outputs in the image range, so a colour mix-up shows), exported."""
    model = trained_espcn()
    path = export_sr_onnx(model, tmp_path_factory.mktemp("onnx") / "espcn_x3.onnx")
    return model, SRPredictor.from_onnx(path)


def test_core_and_serving_import_no_torch():
    code = ("import sys\n"
            "import srstyle.predict, srstyle.inference, srstyle.engine, srstyle.io, srstyle.tiling, srstyle.video\n"
            "import srstyle.serving.catalog, srstyle.serving.service\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'srstyle.train')))\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("name", list(PHOTOS))
def test_y_model_matches_the_float64_reference_on_photos(espcn, name):
    _, sr = espcn
    rgb = PHOTOS[name]()[:200, :260]
    got = sr.upscale(rgb, tile=0)
    ref = reference_upscale(sr.run, 3, "y", rgb)
    assert got.shape == (600, 780, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    # the model matters: it is not bicubic (a trained model is 1-3 dB off bicubic on these)
    assert np.abs(got.astype(int) - reference_upscale(lambda x: np.stack(
        [bicubic_float(c, (c.shape[-2] * 3, c.shape[-1] * 3)) for c in x[0]])[None], 3, "y", rgb)).mean() > 0.3


def test_tiled_equals_untiled_and_split_api_equals_upscale(espcn):
    _, sr = espcn
    rgb = PHOTOS["coffee"]()[:150, :230]
    whole = sr.upscale(rgb, tile=0)
    tiled = sr.upscale(rgb, tile=40)
    assert np.abs(whole.astype(int) - tiled).max() <= 1 and (whole != tiled).mean() < 1e-4
    plan = sr.prepare(rgb, tile=40)
    xs = sr.inputs(plan)
    assert len(xs) == 4 * 6 and all(x.dtype == np.float32 and x.shape[:2] == (1, 1) for x in xs)
    # run in reverse order (as a batching runner may), assemble in plan order
    outputs = [sr.run(x) for x in reversed(xs)][::-1]
    np.testing.assert_array_equal(sr.assemble(plan, outputs), tiled)
    with pytest.raises(ValueError, match="tile 0: model output shape"):
        sr.assemble(sr.prepare(rgb, tile=40), outputs[1:] + outputs[:1])


def test_tiles_with_too_little_overlap_differ(espcn):
    """The overlap is what makes tiling exact: without it the seams show (so the test above can fail)."""
    _, sr = espcn
    rgb = PHOTOS["coffee"]()[:150, :230]
    assert (sr.upscale(rgb, tile=40, overlap=0) != sr.upscale(rgb, tile=0)).mean() > 1e-3


def test_torch_adapter_equals_onnx_core(espcn):
    model, sr = espcn
    rgb = PHOTOS["chelsea"]()[:120, :160]
    torch_sr = _torch_model(model, "model.pt")
    assert torch_sr.receptive_radius == sr.receptive_radius and torch_sr.scale == 3
    assert np.abs(torch_sr.upscale(rgb).astype(int) - sr.upscale(rgb)).max() <= 1


def _trained_rgb_edsr(steps: int = 80):
    import torch

    from srstyle.models import build_model

    hr = np.stack([photo(32, 32, seed=i) for i in range(12)])
    lr = np.stack([downscale_rgb(h, 2) for h in hr])
    x = torch.tensor(lr.transpose(0, 3, 1, 2) / 255.0, dtype=torch.float32)
    y = torch.tensor(hr.transpose(0, 3, 1, 2) / 255.0, dtype=torch.float32)
    torch.manual_seed(0)
    model = build_model("edsr", 2, blocks=1, channels=8)
    return fit_briefly(model, x, y, steps)


@pytest.mark.slow  # 12 s on a 2-core box at load 2 (an EDSR fitted for 80 steps, exported): integration tier
def test_rgb_model_path(tmp_path):
    model = _trained_rgb_edsr()
    sr = SRPredictor.from_onnx(export_sr_onnx(model, tmp_path / "edsr_x2.onnx"))
    assert sr.color == "rgb" and sr.channels == 3
    rgb = modcrop(PHOTOS["astronaut"]()[100:220, 150:310], 2)
    got = sr.upscale(rgb, tile=0)
    assert np.abs(got.astype(int) - reference_upscale(sr.run, 2, "rgb", rgb)).max() <= 1
    assert np.abs(sr.upscale(rgb, tile=32).astype(int) - got).max() <= 1
    assert np.abs(_torch_model(model, "pt").upscale(rgb).astype(int) - got).max() <= 1


def test_output_pixel_cap(espcn):
    _, sr = espcn
    rgb = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ImageError, match="90000 output pixels, over the limit of 89999"):
        sr.upscale(rgb, max_output_pixels=89_999)
    assert sr.upscale(rgb, max_output_pixels=90_000).shape == (300, 300, 3)


def test_core_refuses_wrong_input_arrays(espcn):
    _, sr = espcn
    with pytest.raises(ValueError, match="uint8 RGB"):
        sr.upscale(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        sr.upscale(np.zeros((10, 10, 3), np.float32))
