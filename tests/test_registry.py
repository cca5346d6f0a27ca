"""Promotion on a temporary MLflow store: better challengers take `champion`, worse ones do not, reruns are
no-ops; every version is a signed ONNX model with an input example and its int8 variant beside it."""

import shutil
from pathlib import Path

import mlflow
import pytest

from srstyle.model_registry import (CHALLENGER, CHAMPION, champion_files, download_champion, promote,
                                    register_onnx)


@pytest.fixture()
def store(empty_mlflow_store, tiny_sr_onnx, tmp_path, monkeypatch):
    """``new_run()`` -> (run id, onnx file): a run of the store and an exported SR model to register."""
    shutil.copy(empty_mlflow_store, tmp_path / "mlruns.db")  # a new store, without its ~1.7 s of migrations
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    path = Path(shutil.copy(tiny_sr_onnx, tmp_path / "m.onnx"))  # the session's export (tests/conftest.py)

    def new_run():
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_param("x", 1)
        return run.info.run_id, path

    yield new_run
    mlflow.set_tracking_uri(None)


def _champion():
    return mlflow.MlflowClient().get_model_version_by_alias("sr-x3", CHAMPION).version


def _register(store, psnr, tags=None):
    run_id, path = store()
    return register_onnx("sr-x3", run_id, path, {"psnr": psnr}, tags or {})


def test_champion_moves_only_for_a_real_improvement(store):
    client = mlflow.MlflowClient()
    first = _register(store, 30.0, {"srstyle.run": "a"})
    d1 = promote("sr-x3", first.version, "psnr", margin=0.05)
    assert d1.outcome == "first champion" and _champion() == first.version

    worse = _register(store, 29.5, {"srstyle.run": "b"})
    d2 = promote("sr-x3", worse.version, "psnr", margin=0.05)
    assert d2.outcome == "kept champion" and _champion() == first.version
    assert client.get_model_version_by_alias("sr-x3", CHALLENGER).version == worse.version
    tags = client.get_model_version("sr-x3", worse.version).tags
    assert tags["decision.outcome"] == "kept champion" and tags["decision.champion_score"] == "30.0"

    within_margin = _register(store, 30.03)
    assert promote("sr-x3", within_margin.version, "psnr", margin=0.05).outcome == "kept champion"

    better = _register(store, 30.4)
    d3 = promote("sr-x3", better.version, "psnr", margin=0.05)
    assert d3.outcome == "promoted" and _champion() == better.version
    assert "30.4" in d3.message() and "30.0" in d3.message()


def test_lower_is_better_for_style_metrics(store):
    first = _register(store, 0.5)
    promote("sr-x3", first.version, "psnr", margin=0.01, higher_is_better=False)
    higher = _register(store, 0.6)
    assert promote("sr-x3", higher.version, "psnr", margin=0.01, higher_is_better=False).outcome == "kept champion"
    lower = _register(store, 0.4)
    assert promote("sr-x3", lower.version, "psnr", margin=0.01, higher_is_better=False).outcome == "promoted"


def test_rerun_is_a_no_op(store):
    run_id, path = store()
    mv = register_onnx("sr-x3", run_id, path, {"psnr": 31.0}, {})
    promote("sr-x3", mv.version, "psnr", margin=0.05)
    again = register_onnx("sr-x3", run_id, path, {"psnr": 31.0}, {})
    assert again.version == mv.version
    assert promote("sr-x3", again.version, "psnr", margin=0.05).outcome == "already champion"
    assert len(mlflow.MlflowClient().search_model_versions("name = 'sr-x3'")) == 1


def test_version_is_a_signed_onnx_model_with_example_and_int8_variant(store, tmp_path):
    from mlflow.models import Model

    from srstyle.export.quantize import export_int8  # noqa: F401 - only checks the module exists

    run_id, path = store()
    int8 = tmp_path / "m.int8.onnx"
    shutil.copyfile(path, int8)  # any ONNX file stands in for the variant: what matters is that it travels
    mv = register_onnx("sr-x3", run_id, path, {"psnr": 31.0}, {}, extra_files=[int8])
    promote("sr-x3", mv.version, "psnr", margin=0.05)
    folder, version = download_champion("sr-x3", tmp_path / "dl")
    meta = Model.load(str(folder / "MLmodel"))
    assert version.version == mv.version
    assert meta.signature is not None and meta.signature.inputs.inputs[0].shape == (-1, 1, -1, -1)
    assert meta.saved_input_example_info is not None
    assert "onnx" in meta.flavors and "pytorch" not in meta.flavors
    files = champion_files(folder)
    assert files["main"].is_file() and files["m.int8.onnx"].read_bytes() == int8.read_bytes()
    assert not list(folder.rglob("*.pt")) and not list(folder.rglob("*.pkl"))


def test_champion_model_loads_through_the_alias(store):
    from srstyle.inference import load_sr_model

    mv = _register(store, 31.0)
    promote("sr-x3", mv.version, "psnr", margin=0.05)
    model = load_sr_model("models:/sr-x3@champion")
    assert model.scale == 3


@pytest.mark.integration  # three registrations of a style net: ~5 s, kept out of the unit tier
def test_promote_style_registers_each_fast_style_lower_ratio_wins(store, style_exports, tmp_path):
    """The promote_style stage on the layout the style stages leave: style-<name>, champion by the lower ratio."""
    import json

    from srstyle.config import Params
    from srstyle.data.style_data import StylePaths
    from srstyle.model_registry import promote_style

    paths = StylePaths(tmp_path / "proj")
    style = Params().style.fast.styles[0]
    paths.onnx_dir.mkdir(parents=True)
    shutil.copy(style_exports.fast, paths.onnx_dir / f"fast_{style}.onnx")  # the session's fast export
    paths.fast_model_dir(style).mkdir(parents=True)
    paths.eval_dir.mkdir(parents=True)
    metric = f"fast_{style}_style_loss_over_gatys"
    client = mlflow.MlflowClient()
    for ratio, expected in ((0.40, "first champion"), (0.45, "kept champion"), (0.20, "promoted")):
        run_id, _ = store()
        (paths.fast_model_dir(style) / "mlflow_run.json").write_text(json.dumps({"run_id": run_id}))
        (paths.eval_dir / "metrics.json").write_text(json.dumps({metric: ratio}))
        decisions = promote_style(Params(), paths, tmp_path / "proj")
        assert decisions[f"style-{style}"]["outcome"] == expected, decisions
    champion = client.get_model_version_by_alias(f"style-{style}", CHAMPION)
    assert float(champion.tags[f"metric.{metric}"]) == 0.20
    assert (paths.base / "registry" / "decisions.json").is_file()


def test_a_champion_keeps_its_precision_evaluation_for_engine_auto(store, tmp_path):
    """The export stage's precision record travels with the version: downloaded, it lies beside model.onnx
    (with the int8 variant) where engine auto reads it, and `export-champions` writes it beside the file."""
    import json

    from srstyle.config import EngineConfig
    from srstyle.export.precision import evaluate_precisions
    from srstyle.model_registry import export_champions
    from srstyle.predict import SRPredictor

    run_id, path = store()
    int8 = path.with_name("m.int8.onnx")
    shutil.copyfile(path, int8)  # the same graph: usable, and no faster (auto must say so, not "no record")
    (tmp_path / "validated").mkdir()
    (tmp_path / "validated" / "manifest.json").write_text("[]")  # the unseen photos only
    record = evaluate_precisions(path, tmp_path / "validated", tmp_path, variants=[("onnxruntime", "fp32"),
                                                                                   ("onnxruntime", "int8")])
    assert record["images_unseen"] == 3 and record["variants"]["onnxruntime_int8"]["usable"] == 1
    mv = register_onnx("sr-x3", run_id, path, {"psnr": 31.0}, {},
                       extra_files=[int8, path.with_name("m.precision.json")])
    promote("sr-x3", mv.version, "psnr", margin=0.05)

    folder, _ = download_champion("sr-x3", tmp_path / "dl")
    files = champion_files(folder)
    assert json.loads((folder / "model.precision.json").read_text()) == record
    assert (folder / "model.int8.onnx").read_bytes() == int8.read_bytes()
    engine = SRPredictor.from_onnx(files["main"], EngineConfig(backend="onnxruntime", precision="auto")).engine
    assert set(engine.decision["measured"]) == {"onnxruntime/fp32", "onnxruntime/int8"}
    assert not any("no evaluation" in note for note in engine.decision["notes"]), engine.decision

    from srstyle.config import TrackingConfig

    written = export_champions(tmp_path / "serve", TrackingConfig(), tmp_path)
    assert str(tmp_path / "serve" / "sr-x3.precision.json") in written
    assert json.loads((tmp_path / "serve" / "sr-x3.precision.json").read_text()) == record
