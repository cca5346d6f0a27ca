"""Style transfer through the prediction core (onnxruntime) == the PyTorch networks, within 1 level."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from srstyle.data.style_data import to_tensor, to_uint8
from srstyle.inference import load_style_model
from srstyle.models.style.gatys import resize_to
from srstyle.models.style.metanet import META_TAPS, style_statistics
from srstyle.predict import MetaStylePredictor, ModelLoadError, StylePredictor
from srstyle.stylize import keep_content_colour
from tests.service_helpers import STYLE

META_SIZE = 48  # the style size of the session's meta export (tests.service_helpers.export_style_models)


@pytest.fixture(scope="module")
def content():
    return skimage.data.coffee()[100:260, 150:370]


@pytest.fixture(scope="module")
def painting():
    return skimage.data.astronaut()[:300, :220]


@pytest.fixture(scope="module")
def fast_export(style_exports):
    """(a fitted fast style net, its export for style STYLE): the session's, read-only (tests/conftest.py)."""
    return style_exports.fast_net, style_exports.fast


@pytest.fixture(scope="module")
def meta_export(style_exports):
    """(backbone, meta net, folder of its export: metanet.onnx + transformer.onnx): the session's, read-only."""
    return style_exports.backbone, style_exports.meta, style_exports.meta_dir


def test_fast_style_core_matches_pytorch(fast_export, content):
    net, path = fast_export
    core = StylePredictor.from_onnx(path)
    assert core.style == STYLE
    x = to_tensor(content)[None]
    with torch.no_grad():
        ref = net(x).clamp(0, 1)
    got = core.stylize(content)
    assert got.shape == content.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - to_uint8(ref[0])).max() <= 1
    # preserve_color: the tensor implementation's luminance-only transfer
    kept = to_uint8(keep_content_colour(ref, x)[0])
    assert np.abs(core.stylize(content, preserve_color=True).astype(int) - kept).max() <= 1
    assert np.abs(core.stylize(content, preserve_color=True).astype(int) - got).mean() > 1  # it did something
    # the CLI's loader picks the right predictor from the file
    assert isinstance(load_style_model(path), StylePredictor)


@pytest.mark.slow  # the VGG16 backbone in float64: ~3 s
def test_meta_style_core_matches_pytorch(meta_export, content, painting):
    backbone, meta, folder = meta_export
    core = MetaStylePredictor.from_onnx(folder / "metanet.onnx")
    assert core.style_size == META_SIZE
    with torch.no_grad():
        style = resize_to(to_tensor(painting)[None], META_SIZE)
        theta = meta(style_statistics(backbone(style), META_TAPS))[0]
        ref = meta.transformer(to_tensor(content)[None], theta).clamp(0, 1)
    got = core.stylize(content, painting)
    assert got.shape == content.shape
    diff = np.abs(got.astype(int) - to_uint8(ref[0]))
    assert diff.max() <= 1, diff.max()
    weights = core.weights(painting)
    assert weights.shape == (meta.transformer.num_weights,)
    np.testing.assert_array_equal(core.stylize(content, weights=weights), got)
    assert isinstance(load_style_model(folder / "transformer.onnx"), MetaStylePredictor)


def test_style_loader_refuses_sr_and_mixed_files(tmp_path):
    from srstyle.export.onnx import export_sr_onnx
    from tests.helpers import trained_espcn

    export_sr_onnx(trained_espcn(steps=1), tmp_path / "sr.onnx")
    with pytest.raises(ModelLoadError, match="not an srstyle style export"):
        StylePredictor.from_onnx(tmp_path / "sr.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="not a readable ONNX file"):
        StylePredictor.from_onnx(tmp_path / "broken.onnx")


@pytest.mark.slow  # the exports of the tests above, shared
def test_trainer_model_pt_runs_through_the_adapter_like_its_onnx_export(tmp_path, fast_export, meta_export, content,
                                                                         painting):
    """`srstyle stylize --model model.pt`: the PyTorch adapter builds the same predictors as the ONNX files."""
    from srstyle.train.style import save_style_net

    net, path = fast_export
    save_style_net(tmp_path / "fast.pt", "fast", "transformer_net", {"channels": 4, "residual_blocks": 1}, net,
                   step=1, style=STYLE)
    a, b = load_style_model(tmp_path / "fast.pt"), load_style_model(path)
    assert isinstance(a, StylePredictor) and a.engine is None and b.engine is not None
    assert np.abs(a.stylize(content).astype(int) - b.stylize(content)).max() <= 1
    _, meta, folder = meta_export
    save_style_net(tmp_path / "meta.pt", "meta", "metanet", {"base": 4, "hidden": 8}, meta, step=1)
    a, b = load_style_model(tmp_path / "meta.pt", style_size=META_SIZE), load_style_model(folder / "metanet.onnx")
    assert isinstance(a, MetaStylePredictor) and b.style_size == META_SIZE
    assert np.abs(a.stylize(content, painting).astype(int) - b.stylize(content, painting)).max() <= 1
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match="junk.pt: not a style model"):
        load_style_model(tmp_path / "junk.pt")
