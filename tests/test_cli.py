"""`srstyle upscale|stylize` through the prediction core: MLflow aliases, style on images and videos."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from PIL import Image

from srstyle.cli import main
from srstyle.color import rgb_to_y
from srstyle.evaluate.metrics import psnr
from srstyle.io import load_rgb
from srstyle.predict import SRPredictor, StylePredictor
from srstyle.video import probe, synthetic_clip
from tests.helpers import photo

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def fast_onnx(cli_models):
    """An untrained fast style net (style "t") as ONNX, shared with test_faults_cli.py (tests/conftest.py)."""
    return cli_models[1]


def _project_with_champion(root, sr_onnx, monkeypatch):
    """A project folder whose params.yaml points at its own SQLite store, holding sr-x3@champion (a copy of
    ``sr_onnx``)."""
    import shutil

    import mlflow

    (root / "params.yaml").write_text(yaml.safe_dump({"tracking": {"experiment": "t", "store": "store/mlruns.db",
                                                                   "artifacts": "store/art"}}))
    onnx_file = Path(shutil.copy(sr_onnx, root / "espcn_x3.onnx"))
    from srstyle.config import load_params
    from srstyle.tracking import setup

    # mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI in os.environ: setenv first, so that monkeypatch
    # restores the variable's original state at teardown (a leaked URI sends later tests' runs here)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unused")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    try:
        setup(load_params(root / "params.yaml").tracking, root)
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(onnx_file), "onnx_model")
        client = mlflow.MlflowClient()
        client.create_registered_model("sr-x3")
        mv = client.create_model_version("sr-x3", f"{run.info.artifact_uri}/onnx_model", run.info.run_id)
        client.set_registered_model_alias("sr-x3", "champion", mv.version)
    finally:
        mlflow.set_tracking_uri(None)  # MLflow's global back to unset (and the variable with it)
    return onnx_file


@pytest.mark.integration  # the CLI against a real MLflow registry: ~6 s, kept out of the unit tier
def test_models_alias_uses_the_project_store_and_leaves_no_mlflow_db(cli_models, tmp_path, monkeypatch, capsys):
    start = Path.cwd()
    had_db = (start / "mlflow.db").exists()
    root = tmp_path / "project"
    root.mkdir()
    onnx_file = _project_with_champion(root, cli_models[0], monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    src = elsewhere / "in.png"
    Image.fromarray(photo(30, 40, seed=2)).save(src)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SRSTYLE_ROOT", raising=False)
    # from the project folder (params.yaml found in the working directory) ...
    monkeypatch.chdir(root)
    assert main(["upscale", str(src), str(elsewhere / "a.png"), "--model", "models:/sr-x3@champion"]) == 0
    # ... and from anywhere else with --params
    monkeypatch.chdir(elsewhere)
    assert main(["upscale", str(src), str(elsewhere / "b.png"), "--model", "models:/sr-x3@champion",
                 "--params", str(root / "params.yaml")]) == 0
    expected = SRPredictor.from_onnx(onnx_file).upscale(load_rgb(src))
    np.testing.assert_array_equal(load_rgb(elsewhere / "a.png"), expected)
    np.testing.assert_array_equal(load_rgb(elsewhere / "b.png"), expected)
    assert not list(root.glob("mlflow.db")) and not list(elsewhere.glob("mlflow.db"))
    assert not (elsewhere / "mlruns").exists()
    # an unknown alias is a clean error naming the store
    with pytest.raises(SystemExit, match="models:/sr-x3@nope: cannot download the MLflow model from sqlite:///"):
        main(["upscale", str(src), str(elsewhere / "c.png"), "--model", "models:/sr-x3@nope",
              "--params", str(root / "params.yaml")])
    # no store at all: says so instead of creating one
    with pytest.raises(SystemExit, match="no MLflow store at"):
        main(["upscale", str(src), str(elsewhere / "c.png"), "--model", "models:/sr-x3@champion"])
    assert not list(elsewhere.glob("*.db"))
    assert (start / "mlflow.db").exists() == had_db  # MLflow's default store was never opened


def test_stylize_image_with_an_onnx_model_is_the_core_output(fast_onnx, tmp_path, capsys):
    src = tmp_path / "c.jpg"
    Image.fromarray(photo(50, 70, seed=1)).save(src, quality=95)
    assert main(["stylize", str(src), str(tmp_path / "o.png"), "--model", str(fast_onnx)]) == 0
    expected = StylePredictor.from_onnx(fast_onnx).stylize(load_rgb(src))
    np.testing.assert_array_equal(load_rgb(tmp_path / "o.png"), expected)
    assert main(["stylize", str(src), str(tmp_path / "o.webp"), "--model", str(fast_onnx), "--content-scale", "0.5"]) == 0
    assert load_rgb(tmp_path / "o.webp").shape == (25, 35, 3)


def test_stylize_video(fast_onnx, tmp_path, capsys):
    clip = synthetic_clip(tmp_path / "clip.mp4", width=64, height=48, seconds=1.0, fps=12, audio=True)
    out = tmp_path / "styled.mkv"
    assert main(["stylize", str(clip), str(out), "--model", str(fast_onnx), "--no-progress"]) == 0
    assert "12 frames" in capsys.readouterr().out
    got, src = probe(out), probe(clip)
    assert got["frames"] == 12 and (got["width"], got["height"]) == (64, 48) and got["audio"] == ["aac"]
    assert got["duration"] == pytest.approx(src["duration"], abs=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "styled.mkv"]  # atomic: no temp left
    with av.open(str(clip)) as c:
        first_in = next(c.decode(video=0)).to_ndarray(format="rgb24")
    with av.open(str(out)) as c:
        first_out = next(c.decode(video=0)).to_ndarray(format="rgb24")
    expected = StylePredictor.from_onnx(fast_onnx).stylize(first_in)
    # luma: 4:2:0 chroma of this noisy untrained-net output costs RGB PSNR that says nothing about the path
    got_db = psnr(rgb_to_y(first_out), rgb_to_y(expected))
    print("first frame Y PSNR vs the core on the decoded frame:", got_db)
    assert got_db >= 30.0  # H.264 at crf 18
    assert psnr(rgb_to_y(first_out), rgb_to_y(first_in)) < got_db - 10  # and it is stylised
