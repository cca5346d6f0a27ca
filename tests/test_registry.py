"""Promotion on a temporary MLflow store: better challengers take `champion`, worse ones do not, reruns are no-ops."""

import mlflow
import onnx
import pytest
import torch

from srstyle.export.onnx import export_sr_onnx
from srstyle.models import build_model
from srstyle.registry import CHALLENGER, CHAMPION, promote, register_version


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns.db'}")
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    torch.manual_seed(0)
    path = export_sr_onnx(build_model("espcn", 3, channels=[4, 4]), tmp_path / "m.onnx")
    proto = onnx.load(str(path))

    def trained_run() -> str:
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.onnx.log_model(proto, name="onnx_model", pip_requirements=["onnxruntime"])
        return run.info.run_id

    yield trained_run
    mlflow.set_tracking_uri(None)


def _champion():
    return mlflow.MlflowClient().get_model_version_by_alias("sr-x3", CHAMPION).version


def test_champion_moves_only_for_a_real_improvement(store):
    client = mlflow.MlflowClient()
    first = register_version("sr-x3", store(), "onnx_model", {"psnr": 30.0}, {"srstyle.run": "a"})
    d1 = promote("sr-x3", first.version, "psnr", margin=0.05)
    assert d1.outcome == "first champion" and _champion() == first.version

    worse = register_version("sr-x3", store(), "onnx_model", {"psnr": 29.5}, {"srstyle.run": "b"})
    d2 = promote("sr-x3", worse.version, "psnr", margin=0.05)
    assert d2.outcome == "kept champion" and _champion() == first.version
    assert client.get_model_version_by_alias("sr-x3", CHALLENGER).version == worse.version
    tags = client.get_model_version("sr-x3", worse.version).tags
    assert tags["decision.outcome"] == "kept champion" and tags["decision.champion_score"] == "30.0"

    within_margin = register_version("sr-x3", store(), "onnx_model", {"psnr": 30.03}, {})
    assert promote("sr-x3", within_margin.version, "psnr", margin=0.05).outcome == "kept champion"

    better = register_version("sr-x3", store(), "onnx_model", {"psnr": 30.4}, {})
    d3 = promote("sr-x3", better.version, "psnr", margin=0.05)
    assert d3.outcome == "promoted" and _champion() == better.version
    assert "30.4" in d3.message() and "30.0" in d3.message()


def test_rerun_is_a_no_op(store):
    run_id = store()
    mv = register_version("sr-x3", run_id, "onnx_model", {"psnr": 31.0}, {})
    promote("sr-x3", mv.version, "psnr", margin=0.05)
    again = register_version("sr-x3", run_id, "onnx_model", {"psnr": 31.0}, {})
    assert again.version == mv.version
    assert promote("sr-x3", again.version, "psnr", margin=0.05).outcome == "already champion"
    assert len(mlflow.MlflowClient().search_model_versions("name = 'sr-x3'")) == 1


def test_champion_model_loads_through_the_alias(store):
    from srstyle.inference import load_sr_model

    mv = register_version("sr-x3", store(), "onnx_model", {"psnr": 31.0}, {})
    promote("sr-x3", mv.version, "psnr", margin=0.05)
    model = load_sr_model("models:/sr-x3@champion")
    assert model.scale == 3
