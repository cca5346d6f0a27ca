import json

import pytest
import torch

from srstyle.config import parse_params
from srstyle.data.patches import make_patches
from srstyle.models import MODELS, build_model
from srstyle.train.sr import load_model_file, train_sr
from tests.helpers import make_corpus


def tiny_params(**train):
    return parse_params({
        "seed": 7,
        "patches": {"scales": [3], "modes": ["y"], "hr_size": 24, "stride": 12},
        "runs": {"espcn_x3": {"model": "espcn", "scale": 3}},
        "train": {"steps": 12, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 4, "val_every": 4, "log_every": 2,
                  "lr_milestones": [8], "threads": 1, **train},
        "models": {"espcn": {"channels": [8, 4]}},
    })


@pytest.fixture()
def patches(tmp_path):
    raw, validated = make_corpus(tmp_path)
    make_patches(validated, raw, tmp_path / "patches", tiny_params().patches, seed=0, max_pixels=10**7, progress=False)
    return tmp_path / "patches"


def test_espcn_shapes_and_paper_layout():
    model = build_model("espcn", 3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5), (3, 3), (3, 3)]
    assert [c.out_channels for c in convs] == [64, 32, 9]
    assert isinstance(model.body[1], torch.nn.Tanh)
    assert model(torch.rand(2, 1, 17, 23)).shape == (2, 1, 51, 69)
    assert sum(p.numel() for p in model.parameters()) == 1 * 64 * 25 + 64 + 64 * 32 * 9 + 32 + 32 * 9 * 9 + 9
    assert isinstance(build_model("espcn", 2, activation="relu").body[1], torch.nn.ReLU)
    with pytest.raises(ValueError, match="activation"):
        build_model("espcn", 2, activation="gelu")
    assert "espcn" in MODELS.names()


def test_resume_is_exact(patches, tmp_path):
    params = tiny_params()
    straight = train_sr(params, "espcn_x3", patches, tmp_path / "a", progress=False)
    interrupted = train_sr(params, "espcn_x3", patches, tmp_path / "b", progress=False, stop_after=5)
    assert interrupted.steps == 5 and not (tmp_path / "b" / "model.pt").exists()
    resumed = train_sr(params, "espcn_x3", patches, tmp_path / "b", progress=False)
    a = load_model_file(tmp_path / "a" / "model.pt").state_dict()
    b = load_model_file(tmp_path / "b" / "model.pt").state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.final_val_psnr == straight.final_val_psnr
    curve_a = (tmp_path / "a" / "curve.csv").read_text()
    assert curve_a == (tmp_path / "b" / "curve.csv").read_text()
    assert json.loads((tmp_path / "a" / "train_metrics.json").read_text())["steps"] == 12


def test_changed_config_does_not_resume(patches, tmp_path):
    train_sr(tiny_params(), "espcn_x3", patches, tmp_path / "m", progress=False, stop_after=4)
    other = train_sr(tiny_params(lr=5e-4), "espcn_x3", patches, tmp_path / "m", progress=False)
    reference = train_sr(tiny_params(lr=5e-4), "espcn_x3", patches, tmp_path / "ref", progress=False)
    assert other.final_val_psnr == reference.final_val_psnr


def test_training_improves_over_initialisation(patches, tmp_path):
    from srstyle.data.datasets import PatchStore
    from srstyle.train.loop import seed_everything
    from srstyle.train.sr import validation_psnr

    params = tiny_params(steps=60, val_every=60, lr=3e-3, lr_milestones=[])
    seed_everything(params.seed)
    untrained = validation_psnr(build_model("espcn", 3, channels=[8, 4]), PatchStore(patches / "val" / "y_x3"), torch.device("cpu"))
    result = train_sr(params, "espcn_x3", patches, tmp_path / "m", progress=False)
    curve = (tmp_path / "m" / "curve.csv").read_text().splitlines()
    first_loss, last_loss = float(curve[1].split(",")[1]), float(curve[-1].split(",")[1])
    assert last_loss < first_loss / 2
    assert result.final_val_psnr > untrained + 3


def test_model_file_loads_weights_only(patches, tmp_path):
    train_sr(tiny_params(steps=2), "espcn_x3", patches, tmp_path / "m", progress=False)
    payload = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert payload["arch"] == "espcn" and payload["scale"] == 3 and payload["kwargs"] == {"channels": [8, 4]}
