"""The stages end to end on a tiny corpus, with a real MLflow SQLite store, then the user's command."""

import json
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from PIL import Image

from srstyle.cli import main
from srstyle.config import parse_params
from srstyle.data.patches import make_patches
from srstyle.evaluate.sr import evaluate_sr
from srstyle.export.onnx import export_and_check
from srstyle.inference import load_sr_model, upscale_rgb
from srstyle.io import load_rgb
from srstyle.train.sr import load_model_file, train_sr
from tests.helpers import make_corpus, photo


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    raw, validated = make_corpus(root / "data", n_train=3, n_val=2, size=(60, 75))
    params = parse_params({
        "patches": {"scales": [3], "hr_size": 24, "stride": 12},
        "train": {"steps": 30, "batch_size": 8, "checkpoint_every": 10, "val_every": 10, "log_every": 5, "threads": 1},
        "models": {"espcn": {"channels": [16, 8]}},
        "tracking": {"experiment": "test"},
    })
    make_patches(validated, raw, root / "data/patches", params.patches, 0, 10**7, progress=False)
    model_dir = root / "data/models/espcn_x3"
    result = train_sr(params, "espcn_x3", root / "data/patches", model_dir, tracking_root=root, progress=False)
    model = load_sr_model(model_dir / "model.pt")
    metrics = evaluate_sr(model, validated, raw, root / "data/eval", crop=30)
    export = export_and_check(load_model_file(model_dir / "model.pt"), root / "data/onnx", "espcn_x3", opset=18, atol=1e-4)
    return root, params, result, metrics, export


def test_mlflow_run_has_params_metrics_picture_and_model(pipeline):
    root, params, result, _, _ = pipeline
    assert (root / "mlruns.db").is_file()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    run = mlflow.get_run(result.run_id)
    assert run.data.params["model"] == "espcn" and run.data.params["train.steps"] == "30"
    history = mlflow.MlflowClient().get_metric_history(result.run_id, "train_loss")
    assert [m.step for m in history] == [5, 10, 15, 20, 25, 30]
    assert len(mlflow.MlflowClient().get_metric_history(result.run_id, "val_psnr")) == 3
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert {"curve.csv", "val_patches_lr_bicubic_sr_hr.png"} <= artifacts
    assert run.info.artifact_uri.startswith((root / "mlartifacts").as_uri())
    logged = mlflow.pytorch.load_model(f"runs:/{result.run_id}/model")
    assert logged.scale == 3
    record = json.loads((root / "data/models/espcn_x3/mlflow_run.json").read_text())
    assert record["run_id"] == result.run_id


def test_evaluate_outputs_and_protocol(pipeline):
    root, _, _, metrics, _ = pipeline
    assert metrics["images"] == 2 and metrics["scale"] == 3
    assert metrics["psnr_gain"] == pytest.approx(metrics["psnr"] - metrics["bicubic_psnr"], abs=1e-3)
    rows = (root / "data/eval/per_image.csv").read_text().splitlines()
    assert rows[0].startswith("image,split,psnr,ssim,bicubic_psnr,bicubic_ssim") and len(rows) == 3
    picture = np.asarray(Image.open(root / "data/eval/comparison.png"))
    assert picture.shape[0] > 30 and picture.shape[1] >= 4 * 30


def test_onnx_and_torch_agree_on_a_whole_photo(pipeline, tmp_path):
    root, _, _, _, export = pipeline
    rgb = photo(41, 57, seed=11)
    onnx_out = upscale_rgb(load_sr_model(root / "data/onnx" / export["file"]), rgb)
    torch_out = upscale_rgb(load_sr_model(root / "data/models/espcn_x3/model.pt"), rgb)
    assert onnx_out.shape == (123, 171, 3)
    assert np.abs(onnx_out.astype(int) - torch_out.astype(int)).max() <= 1


def test_cli_upscale_with_onnx_and_mlflow_uri(pipeline, tmp_path, capsys, monkeypatch):
    root, _, result, _, export = pipeline
    src = tmp_path / "in.jpg"
    Image.fromarray(photo(40, 50, seed=3)).save(src, quality=95)
    assert main(["upscale", str(src), str(tmp_path / "out.png"), "--model", str(root / "data/onnx" / export["file"])]) == 0
    assert load_rgb(tmp_path / "out.png").shape == (120, 150, 3)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns.db'}")
    assert main(["upscale", str(src), str(tmp_path / "out2.png"), "--model", f"runs:/{result.run_id}/model"]) == 0
    assert load_rgb(tmp_path / "out2.png").shape == (120, 150, 3)


def test_cli_refuses_bad_input_naming_the_file(pipeline, tmp_path):
    root, _, _, _, export = pipeline
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    model = str(root / "data/onnx" / export["file"])
    proc = subprocess.run([sys.executable, "-m", "srstyle.cli", "upscale", str(bad), str(tmp_path / "o.png"), "--model", model],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "broken.png" in proc.stderr and "Traceback" not in proc.stderr
    good = tmp_path / "good.png"
    Image.fromarray(photo(20, 20, seed=1)).save(good)
    with pytest.raises(SystemExit, match="missing.onnx: model file not found"):
        main(["upscale", str(good), str(tmp_path / "o.png"), "--model", str(tmp_path / "missing.onnx")])
    with pytest.raises(SystemExit, match="nothing.png: no such file"):
        main(["upscale", str(tmp_path / "nothing.png"), str(tmp_path / "o.png"), "--model", model])


@pytest.mark.parametrize("model, scale", [("edsr", 2), ("vdsr", 3)])
def test_rgb_and_bicubic_input_models_through_the_stages(tmp_path, model, scale):
    raw, validated = make_corpus(tmp_path / "data", n_train=2, n_val=1, size=(48, 60))
    tiny = {"edsr": {"blocks": 1, "channels": 8}, "vdsr": {"depth": 3, "channels": 8}}[model]
    params = parse_params({
        "patches": {"scales": [], "modes": [], "hr_size": 24, "stride": 12},
        "runs": {"r": {"model": model, "scale": scale}},
        "train": {"steps": 6, "batch_size": 4, "val_every": 3, "log_every": 3, "checkpoint_every": 3, "threads": 1},
        "models": {model: tiny},
    })
    color = "rgb" if model == "edsr" else "y"
    counts = make_patches(validated, raw, tmp_path / "patches", params.patches, 0, 10**7, progress=False,
                          extra_stores=[(color, scale)])
    assert set(counts) == {f"train/{color}_x{scale}", f"val/{color}_x{scale}"}
    train_sr(params, "r", tmp_path / "patches", tmp_path / "m", progress=False)
    sr_model = load_sr_model(tmp_path / "m" / "model.pt")
    metrics = evaluate_sr(sr_model, validated, raw, tmp_path / "eval", crop=24,
                          unseen=[("a.png", photo(40, 52, seed=7)), ("b.png", photo(36, 48, seed=8))])
    assert metrics["scale"] == scale and np.isfinite(metrics["psnr"])
    # photos outside training and validation: their own mean, never mixed into the validation figures
    assert metrics["unseen_images"] == 2 and metrics["images"] == len(metrics_rows(tmp_path / "eval", "val"))
    assert metrics["unseen_psnr_gain"] == pytest.approx(metrics["unseen_psnr"] - metrics["unseen_bicubic_psnr"], abs=1e-3)
    assert [r["image"] for r in metrics_rows(tmp_path / "eval", "unseen")] == ["a.png", "b.png"]
    report = export_and_check(load_model_file(tmp_path / "m" / "model.pt"), tmp_path / "onnx", "r", opset=18, atol=1e-4)
    onnx_model = load_sr_model(tmp_path / "onnx" / report["file"])
    rgb = photo(20, 26, seed=4)
    a, b = upscale_rgb(onnx_model, rgb), upscale_rgb(sr_model, rgb)
    assert a.shape == (20 * scale, 26 * scale, 3) and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def metrics_rows(eval_dir, split: str) -> list[dict]:
    import csv

    with open(eval_dir / "per_image.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def test_the_unseen_photos_ship_with_the_dependencies():
    from srstyle.data.fetch import EMBEDDED_GRAY, EMBEDDED_TRAIN, EMBEDDED_VAL
    from srstyle.data.unseen import unseen_photos

    photos = dict(unseen_photos())
    assert sorted(photos) == ["china.jpg", "flower.jpg", "grace_hopper.jpg"]
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 and min(p.shape[:2]) >= 400 for p in photos.values())
    assert not set(photos) & set(EMBEDDED_TRAIN + EMBEDDED_VAL + EMBEDDED_GRAY)


def test_profile_args_flatten_to_shell_safe_dvc_flags(tmp_path):
    from pathlib import Path

    from srstyle.cli import profile_args

    flags = profile_args(Path(__file__).resolve().parents[1] / "profiles" / "paper.yaml")
    pairs = dict(f.split("=", 1) for f in flags[1::2])
    assert flags[0::2] == ["-S"] * len(pairs)
    assert pairs["recipes.edsr.loss"] == "l1" and pairs["models.edsr.config"] == "paper"
    assert pairs["recipes.vdsr.lr_milestones"] == "[20000,40000,60000]"
    assert not any(" " in f for f in flags)
    # Every key the profile sets must exist in the params schema (a typo would only fail on the GPU box).
    from srstyle.config import parse_params
    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    for key, value in pairs.items():
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    params = parse_params(raw)
    assert params.run("espcn_x3").train.steps == 100000
