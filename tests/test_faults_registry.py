"""Registry faults of issue 14, each with the case that broke before its fix:

* a champion without a metric tag made `promote` raise TypeError (``score > None + margin``);
* a champion moved by another promotion between our read and our write was overwritten unseen;
* `dvc exp run -S ...` (workspace or --temp) moved `champion`: experiments now register challengers only;
* a run that never got its ONNX model (DVC restored the export from its run cache) failed deep in MLflow
  with no hint of the stage; now the export's own file decides the run, and a missing artifact is a clear error.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import onnx
import pytest

from srstyle.config import Params
from srstyle.model_registry import (CHAMPION, RegistryError, in_dvc_experiment, promote, promote_runs,
                                    register_onnx)
from srstyle.paths import DataPaths

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store(empty_mlflow_store, tiny_sr_onnx, tmp_path, monkeypatch):
    shutil.copy(empty_mlflow_store, tmp_path / "mlruns.db")  # a new store, without its ~1.7 s of migrations
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "SRSTYLE_SHIP"):
        monkeypatch.delenv(var, raising=False)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("srstyle", artifact_location=(tmp_path / "artifacts").as_uri())
    path = Path(shutil.copy(tiny_sr_onnx, tmp_path / "m.onnx"))  # the session's export (tests/conftest.py)

    def new_run(log_onnx: bool = False) -> str:
        with mlflow.start_run(experiment_id=exp) as run:
            if log_onnx:
                mlflow.onnx.log_model(onnx.load(str(path)), name="onnx_model", pip_requirements=["onnxruntime"])
        return run.info.run_id

    yield {"new_run": new_run, "onnx": path, "uri": uri, "exp": exp}
    mlflow.set_tracking_uri(None)


def _champion(name="sr-x3"):
    return str(mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION).version)


def test_champion_without_metric_tag_does_not_raise(store):
    client = mlflow.MlflowClient()
    first = register_onnx("sr-x3", store["new_run"](), store["onnx"], {"psnr": 30.0}, {})
    promote("sr-x3", first.version, "psnr", margin=0.05)
    client.delete_model_version_tag("sr-x3", first.version, "metric.psnr")  # e.g. registered by hand
    second = register_onnx("sr-x3", store["new_run"](), store["onnx"], {"psnr": 29.0}, {})
    decision = promote("sr-x3", second.version, "psnr", margin=0.05)
    assert decision.outcome == "promoted" and decision.champion_score is None
    assert _champion() == str(second.version)
    assert "no metric" in decision.message()


def test_alias_is_checked_again_before_it_moves(store, monkeypatch):
    """Another promotion moves `champion` to a strong v3 just after we read it: we must not overwrite v3."""
    client = mlflow.MlflowClient()
    v1 = register_onnx("sr-x3", store["new_run"](), store["onnx"], {"psnr": 30.0}, {})
    promote("sr-x3", v1.version, "psnr", margin=0.05)
    v2 = register_onnx("sr-x3", store["new_run"](), store["onnx"], {"psnr": 31.0}, {})
    v3 = register_onnx("sr-x3", store["new_run"](), store["onnx"], {"psnr": 35.0}, {})
    real = mlflow.MlflowClient.get_model_version_by_alias
    raced = []

    def racing(self, name, alias):
        result = real(self, name, alias)
        if alias == CHAMPION and not raced:
            raced.append(True)
            client.set_registered_model_alias(name, CHAMPION, v3.version)  # the other process wins the race
        return result

    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", racing)
    decision = promote("sr-x3", v2.version, "psnr", margin=0.05)
    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", real)
    assert raced and _champion() == str(v3.version)
    assert decision.outcome == "kept champion" and str(decision.champion_version) == str(v3.version)


def _layout(root: Path, onnx_src: Path, onnx_run: str, record_run: str) -> tuple[Params, DataPaths]:
    """data/ as the SR stages leave it: the ONNX file (exported from ``onnx_run``), the run record, metrics."""
    paths = DataPaths(root)
    model = onnx.load(str(onnx_src))
    entry = model.metadata_props.add()
    entry.key, entry.value = "mlflow_run_id", onnx_run
    paths.onnx_dir("espcn_x3").mkdir(parents=True)
    onnx.save(model, str(paths.onnx_dir("espcn_x3") / "espcn_x3.onnx"))
    paths.model_dir("espcn_x3").mkdir(parents=True)
    (paths.model_dir("espcn_x3") / "mlflow_run.json").write_text(json.dumps({"run_id": record_run}))
    paths.eval_dir("espcn_x3").mkdir(parents=True)
    (paths.eval_dir("espcn_x3") / "metrics.json").write_text(json.dumps({"psnr": 30.5, "ssim": 0.9}))
    return Params(), paths


def test_run_without_its_onnx_model_is_a_clear_error(store, tmp_path):
    run = store["new_run"](log_onnx=False)  # the export stage never logged into this run
    params, paths = _layout(tmp_path / "proj", store["onnx"], run, run)
    with pytest.raises(RegistryError) as err:
        promote_runs(params, paths, tmp_path / "proj")
    assert run in str(err.value) and "export_onnx@espcn_x3" in str(err.value)
    assert "dvc repro -f export_onnx@espcn_x3" in str(err.value)


def test_run_cache_restore_registers_into_the_run_that_exported_the_file(store, tmp_path):
    """Training reran (new run B, same weights); DVC restored the export made in run A from its run cache."""
    exported_in = store["new_run"](log_onnx=True)
    retrained = store["new_run"](log_onnx=False)
    params, paths = _layout(tmp_path / "proj", store["onnx"], exported_in, retrained)
    decisions = promote_runs(params, paths, tmp_path / "proj")
    assert decisions["espcn_x3"]["outcome"] == "first champion"
    mv = mlflow.MlflowClient().get_model_version("sr-x3", _champion())
    assert mv.tags["srstyle.source_run_id"] == exported_in


def test_experiment_is_detected_from_dvc_env_and_temp_dirs(tmp_path):
    assert not in_dvc_experiment({}, tmp_path)
    assert in_dvc_experiment({"DVC_EXP_NAME": "x"}, tmp_path)
    assert in_dvc_experiment({}, tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc")


STAGE = """
import json, sys, yaml, mlflow
from srstyle.model_registry import promote, register_onnx, ship_decision
p = yaml.safe_load(open("params.yaml"))
with mlflow.start_run(experiment_id="{exp}") as run:
    pass
mv = register_onnx("sr-x3", run.info.run_id, "{onnx}", {{"psnr": float(p["psnr"])}}, {{}})
ok, why = ship_decision()
d = promote("sr-x3", mv.version, "psnr", 0.05, ship=ok, why=why)
json.dump({{"outcome": d.outcome, "version": d.version}}, open("decision.json", "w"))
"""


@pytest.mark.integration  # a real `dvc exp run`: ~17 s, kept out of the unit tier
@pytest.mark.timeout(300)
def test_dvc_exp_run_registers_challengers_only(store, tmp_path):
    """A real `dvc exp run -S` (workspace and --temp): the better model becomes challenger, not champion;
    the plain `dvc repro` of committed params ships."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "stage.py").write_text(STAGE.format(exp=store["exp"], onnx=store["onnx"]))
    (repo / "params.yaml").write_text("psnr: 30\n")
    (repo / "dvc.yaml").write_text(textwrap.dedent("""\
        stages:
          promote:
            cmd: python stage.py
            deps: [stage.py]
            params: [psnr]
            outs:
              - decision.json:
                  cache: false
        """))
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO / "src"),
           "MLFLOW_TRACKING_URI": store["uri"], "MLFLOW_DISABLE_TELEMETRY": "true"}

    def sh(*cmd):
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    sh("dvc", "config", "core.analytics", "false")
    sh("git", "add", "-A")
    sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    sh("dvc", "repro")
    assert json.loads((repo / "decision.json").read_text())["outcome"] == "first champion"
    assert _champion() == "1"

    sh("dvc", "exp", "run", "-S", "psnr=40")  # far better, but an experiment
    decision = json.loads((repo / "decision.json").read_text())
    assert decision["outcome"].startswith("challenger only") and "would be promoted" in decision["outcome"]
    client = mlflow.MlflowClient()
    assert _champion() == "1" and str(client.get_model_version_by_alias("sr-x3", "challenger").version) == "2"

    sh("dvc", "exp", "run", "--temp", "-S", "psnr=41")
    assert _champion() == "1" and str(client.get_model_version_by_alias("sr-x3", "challenger").version) == "3"
