"""`sr-x<scale>@perceptual` beside the PSNR `champion`: its own rule, its own decisions, served under its own name."""

import shutil
from pathlib import Path

import mlflow
import pytest

from srstyle.config import PromoteConfig, TrackingConfig
from srstyle.model_registry import CHAMPION, PERCEPTUAL, export_champions, promote, promote_perceptual, register_onnx

# a fresh MLflow store and ONNX registrations: 5-15 s each on this 2-core box, so the integration tier
pytestmark = pytest.mark.slow


@pytest.fixture()
def store(empty_mlflow_store, tiny_sr_onnx, tmp_path, monkeypatch):
    shutil.copy(empty_mlflow_store, tmp_path / "mlruns.db")  # a new store, without its ~1.7 s of migrations
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    path = Path(shutil.copy(tiny_sr_onnx, tmp_path / "m.onnx"))  # the session's export (tests/conftest.py)

    def register(metrics):
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_param("x", 1)
        return register_onnx("sr-x3", run.info.run_id, path, metrics, {})

    yield register
    mlflow.set_tracking_uri(None)


def _holder(alias):
    return mlflow.MlflowClient().get_model_version_by_alias("sr-x3", alias).version


def test_psnr_and_perceptual_choices_stay_apart(store, tmp_path):
    cfg = PromoteConfig(perceptual_metric="vgg_distance", perceptual_margin=0.01, perceptual_min_gain_db=0.2)
    mse = {"psnr": 30.0, "psnr_gain": 1.0, "vgg_distance": 0.30, "niqe": 7.0}
    gan = {"psnr": 29.4, "psnr_gain": 0.4, "vgg_distance": 0.20, "niqe": 5.0}
    hallucinating = {"psnr": 28.5, "psnr_gain": -0.5, "vgg_distance": 0.10, "niqe": 4.0}
    a, b, c = store(mse), store(gan), store(hallucinating)
    for mv, metrics in ((a, mse), (b, gan), (c, hallucinating)):
        promote("sr-x3", mv.version, "psnr", margin=0.05)
        rec = promote_perceptual("sr-x3", mv, metrics, cfg, ship=True, why="")
    assert _holder(CHAMPION) == a.version  # PSNR: the MSE model
    assert _holder(PERCEPTUAL) == b.version  # perceptual: the GAN; the one below bicubic is not eligible
    assert rec["outcome"].startswith("not eligible") and rec["champion_version"] == b.version
    tags = mlflow.MlflowClient().get_model_version("sr-x3", b.version).tags
    assert tags["perceptual_decision.outcome"] == "promoted" and tags["decision.outcome"] == "kept champion"

    written = export_champions(tmp_path / "serve", TrackingConfig(), tmp_path)
    assert {p.rsplit("/", 1)[-1] for p in written} == {"sr-x3.onnx", "sr-x3@perceptual.onnx"}


def test_the_service_catalog_serves_both_and_defaults_to_the_champion(store, monkeypatch):
    from srstyle.serving.catalog import load_catalog

    cfg = PromoteConfig(perceptual_metric="niqe")
    mse, gan = {"psnr": 30.0, "psnr_gain": 1.0, "niqe": 7.0}, {"psnr": 29.0, "psnr_gain": 0.1, "niqe": 5.0}
    a, b = store(mse), store(gan)
    for mv, metrics in ((a, mse), (b, gan)):
        promote("sr-x3", mv.version, "psnr", margin=0.05)
        promote_perceptual("sr-x3", mv, metrics, cfg, ship=True, why="")
    monkeypatch.delenv("SRSTYLE_SERVE_DIR", raising=False)
    catalog = load_catalog()
    assert not catalog.errors
    assert catalog.models["sr-x3"].version == str(a.version)
    assert catalog.models["sr-x3@perceptual"].version == str(b.version)
    assert catalog.default_sr(3).name == "sr-x3"
