import numpy as np
import pytest
import torch

from srstyle.inference import _torch_model
from srstyle.models import build_model
from srstyle.tiling import receptive_radius, run_tiled, self_ensemble


@pytest.mark.parametrize("name, kwargs", [
    ("espcn", {}),
    ("edsr", {"blocks": 2, "channels": 8}),
    ("srresnet", {"blocks": 2, "channels": 8}),
])
def test_tiled_equals_whole_image(name, kwargs):
    torch.manual_seed(0)
    model = build_model(name, 2, **kwargs).eval()
    channels = 1 if model.color == "y" else 3
    r = receptive_radius(model, channels)
    x = np.random.default_rng(0).random((1, channels, 45, 61), dtype=np.float32)
    with torch.no_grad():
        run = lambda a: model(torch.from_numpy(a)).numpy()  # noqa: E731
        whole = run(x)
        tiled = run_tiled(run, x, 2, tile=16, overlap=r)
        too_little = run_tiled(run, x, 2, tile=16, overlap=max(r - 3, 0))
    assert tiled.shape == whole.shape
    assert np.max(np.abs(tiled - whole)) <= 1e-5
    assert np.max(np.abs(too_little - whole)) > 1e-5  # the overlap really matters


def test_receptive_radius_of_known_layouts():
    assert receptive_radius(build_model("espcn", 3), 1) in (4, 5)  # 5x5, 3x3, 3x3 convs: 2 + 1 + 1
    from srstyle.models import as_lr_model

    # SRCNN 9-1-5 at HR resolution (radius 6 HR px) behind a bicubic upscale: a few LR pixels.
    assert 3 <= receptive_radius(as_lr_model(build_model("srcnn", 2, kernels=[9, 1, 5])), 1) <= 6


def test_self_ensemble_inverts_each_transform():
    def nearest(a):  # an exactly equivariant "model": the ensemble must give it back unchanged
        return a.repeat(2, axis=2).repeat(2, axis=3)

    x = np.random.default_rng(1).random((1, 3, 5, 7), dtype=np.float32)
    np.testing.assert_allclose(self_ensemble(nearest, x), nearest(x), atol=1e-6)

    def biased(a):  # not equivariant: the ensemble averages the 8 views
        out = nearest(a).copy()
        out[..., 0, :] += 1.0
        return out

    assert not np.allclose(self_ensemble(biased, x), biased(x))


def test_srmodel_predict_uses_tiles_for_large_inputs():
    torch.manual_seed(0)
    model = _torch_model(build_model("espcn", 3, channels=[8, 4]), "test")
    x = np.random.default_rng(2).random((1, 1, 70, 90), dtype=np.float32)
    whole = model.predict(x)
    model.tile = 32
    np.testing.assert_allclose(model.predict(x), whole, atol=1e-5)
