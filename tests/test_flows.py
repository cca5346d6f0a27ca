"""The Prefect `retrain` flow on a copy of the session's finished tiny project (tests/conftest.py ``tiny_repro``:
every stage of dvc.yaml, the style chain on tests.helpers.TINY_STYLE), on the session's Prefect server: the stages
DVC reruns for the run's parameters and those it skips, MLflow registry aliases, the Markdown report, the gpu
tag limit, a DVC remote, the Bento, and DVC's run cache with MLflow. The flow's mechanics on synthetic stages:
test_flow_graph.py and test_faults_flow.py."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

DVC = str(Path(sys.executable).parent / "dvc")


class _Env:
    """PREFECT_HOME in a temp folder; no MLFLOW_TRACKING_URI/SRSTYLE_ROOT leaking in from the caller."""

    def __init__(self, home: Path):
        self.home = home

    def __enter__(self):
        self.saved = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_URI", "SRSTYLE_ROOT", "PREFECT_HOME")}
        os.environ["PREFECT_HOME"] = str(self.home)

    def __exit__(self, *exc):
        os.environ.pop("PREFECT_HOME", None)
        for k, v in self.saved.items():
            if v is not None:
                os.environ[k] = v


def _alias(root: Path, alias: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    try:
        return mlflow.MlflowClient().get_model_version_by_alias("sr-x3", alias)
    finally:
        mlflow.set_tracking_uri(None)


def _gpu_probe_flow():
    """Two `gpu`-tagged tasks submitted at once: under the limit of 1 they must not overlap."""
    from prefect import flow, task

    @task(tags=["gpu"])
    def hold(i: int) -> tuple[float, float]:
        t0 = time.monotonic()
        time.sleep(1.5)
        return t0, time.monotonic()

    @flow
    def probe() -> list:
        futures = [hold.submit(i) for i in range(2)]
        return [f.result() for f in futures]

    return probe


# The flow's run parameters: narrowed to espcn_x3 (params.yaml has two runs) with fewer steps than the champion's.
FLOW_OVERRIDES = {"recipes.espcn.steps": 6}
# What those parameters make DVC rerun on the session's finished tiny project: patches (it reads `runs`: the
# stores the runs need), espcn_x3's chain and what reads it.
RERUN = ["patches", "train@espcn_x3", "evaluate@espcn_x3", "export_onnx@espcn_x3", "compare", "benchmark", "promote", "curves"]


def _run_flow(base: Path, tiny_repro, **kwargs) -> dict:
    """One flow run on a copy of the session's finished tiny project (tests/conftest.py ``tiny_repro``: one real
    `dvc repro` of every stage, espcn_x3 and fsrcnn_x3 trained for 20 steps, espcn_x3 the first champion of
    sr-x3). The flow narrows the runs to espcn_x3 at 6 steps: DVC reruns espcn_x3's chain and what reads it,
    skips the rest (the style chain among them), and the weaker new version becomes the challenger only."""
    from prefect.artifacts import Artifact

    from pipelines.retrain import REPORT_KEY, retrain
    from tests.helpers import copy_project

    root = copy_project(tiny_repro[0], base / "proj")
    subprocess.run([DVC, "remote", "add", "-d", "local", "../remote"], cwd=root, check=True, capture_output=True)
    out = {"root": root, "params_before": (root / "params.yaml").read_bytes(),
           "fsrcnn_before": (root / "data/models/fsrcnn_x3/train_metrics.json").read_bytes(),
           "lock_before": (root / "dvc.lock").read_text(),
           "decisions_before": json.loads((root / "data/registry/decisions.json").read_text())}
    t0 = time.perf_counter()
    state = retrain(project_dir=str(root), models=["espcn"], scale=3, overrides=FLOW_OVERRIDES, return_state=True,
                    **kwargs)
    out["result"], out["flow_run_id"] = state.result(), state.state_details.flow_run_id
    out["seconds"] = time.perf_counter() - t0
    out["artifact"] = Artifact.get(REPORT_KEY).data
    return out


@pytest.fixture(scope="module")
def flow_run(tiny_repro, prefect_session_api, tmp_path_factory):
    """One flow run (``_run_flow``) on the session's Prefect server (tests/conftest.py ``prefect_session_api``; the slow
    test below continues on a copy of this project in the same server)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName
    base = tmp_path_factory.mktemp("flow")
    with _Env(base / "prefect-home"):
        out = _run_flow(base, tiny_repro, push_remote=True, build_bento=False)  # bentoml build: the slow test
        out["gpu_intervals"] = sorted(_gpu_probe_flow()())
        this_run = FlowRunFilter(id=FlowRunFilterId(any_=[out["flow_run_id"]]))  # the server is the session's
        with get_client(sync_client=True) as client:
            out["train_runs"] = client.read_task_runs(
                flow_run_filter=this_run, task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["train@espcn_x3"])))
            out["style_train_runs"] = client.read_task_runs(flow_run_filter=this_run, task_run_filter=TaskRunFilter(
                name=TaskRunFilterName(any_=["train_style@starry_night", "train_meta"])))
            out["gpu_limit"] = client.read_concurrency_limit_by_tag("gpu")
        print(f"retrain flow: {out['seconds']:.1f} s; stages: {out['result']['steps']}")
        yield out


def _mlflow_run(root: Path, run_id: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    return mlflow.get_run(run_id)


def test_flow_reruns_what_its_parameters_change_then_packages(flow_run):
    from pipelines.dvc_graph import lock_entry, stage_order

    root, result = flow_run["root"], flow_run["result"]
    assert result["runs"] == ["espcn_x3"]
    assert result["params_changes"] == {"runs": {"espcn_x3": {"model": "espcn", "scale": 3}}, "recipes.espcn.steps": 6}
    stages = result["stages"]
    # every stage of dvc.yaml for the narrowed runs is a task (fsrcnn_x3's are not), in DVC's order
    assert {"compare", "benchmark", "curves", "promote", "train_meta", "export_style_onnx"} <= set(stages)
    assert not any("fsrcnn" in s for s in stages)
    # DVC decided what reran (read from dvc.lock): patches, espcn_x3's chain and what reads it, in order; not
    # fetch/validate, not the style chain (their inputs did not change); then the packaging and the push
    assert [s["stage"] for s in result["steps"] if s["ran"]] == RERUN + ["package", "dvc push"]
    assert [s for s in stages if s in RERUN] == RERUN
    assert (root / "data/models/fsrcnn_x3/train_metrics.json").read_bytes() == flow_run["fsrcnn_before"]
    assert json.loads((root / "data/models/espcn_x3/train_metrics.json").read_text())["steps"] == 6
    # the run's parameters were for this run: params.yaml is back as it was, dvc.lock records what ran
    assert (root / "params.yaml").read_bytes() == flow_run["params_before"]
    assert lock_entry(root, "train@espcn_x3")["params"]["params.yaml"]["recipes.espcn"]["steps"] == 6
    assert "train@fsrcnn_x3" in flow_run["lock_before"] and lock_entry(root, "train@fsrcnn_x3")
    assert stage_order(root) != stages  # params.yaml's two runs again: fsrcnn_x3's stages are back
    metrics = result["metrics"]["espcn_x3"]
    assert metrics["psnr"] > 5 and metrics["psnr_gain"] == pytest.approx(metrics["psnr"] - metrics["bicubic_psnr"], abs=1e-3)
    assert result["metrics"]["espcn_x3"]["psnr"] < flow_run["decisions_before"]["espcn_x3"]["psnr"]
    # the champion (espcn_x3 at 20 steps, version 1) is what gets packaged: the weaker challenger is not
    decision = result["decisions"]["espcn_x3"]
    assert decision["outcome"] == "kept champion" and decision["registered_model"] == "sr-x3"
    assert str(decision["champion_version"]) == "1" and str(decision["version"]) == "3"
    assert decision["psnr"] < decision["champion_psnr"] - decision["margin_db"]
    assert "sr-x3.onnx" in result["package"]["files"] and (root / "serve_models/sr-x3.onnx").is_file()
    packaged = (root / "serve_models/sr-x3.onnx").read_bytes()
    assert packaged != (root / "data/onnx/espcn_x3/espcn_x3.onnx").read_bytes()  # not the 6-step model
    assert (root / "data/plots/curves.png").is_file() and "espcn_x3" in (root / "data/plots/sr_val_psnr.csv").read_text()


def test_style_chain_is_checked_by_dvc_and_reported_with_its_metrics_and_runs(flow_run):
    import mlflow

    root, result, report = flow_run["root"], flow_run["result"], flow_run["artifact"]
    style = result["style"]
    assert style["styles"] == ["starry_night"]
    m = style["metrics"]
    # the style chain's tasks ran; DVC found each stage up to date (tiny_repro trained them; nothing they read changed)
    assert {s["stage"]: s["ran"] for s in result["steps"] if "style" in s["stage"] or s["stage"] == "train_meta"} == {
        "fetch_style": False, "validate_style": False, "train_style@starry_night": False, "train_meta": False,
        "evaluate_style": False, "export_style_onnx": False, "promote_style": False}
    # even 4 steps (3 for the meta net) move the style loss below the baselines (fast ~0.40; the meta net on
    # held-out paintings ~0.94 with the merged trainer skeleton after 3 steps)
    assert 0 < m["fast_starry_night_style_loss_ratio_to_untrained"] < 0.9
    assert 0 < m["meta_held_out_style_loss_ratio_to_unstyled"] < 1.0
    assert m["fast_starry_night_style_loss_over_gatys"] > 0 and m["meta_train_style_loss_over_gatys"] > 0
    assert m["gatys_max_relative_loss_increase"] <= 1e-6
    # what the stage wrote is what it logged to MLflow (a second, independent record)
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    logged = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`srstyle.run` = 'style_evaluate'",
                                output_format="list")
    assert len(logged) == 1
    assert logged[0].data.metrics["fast_starry_night_style_loss_ratio_to_untrained"] == pytest.approx(
        m["fast_starry_night_style_loss_ratio_to_untrained"])
    assert json.loads((root / "data/style/models/fast/starry_night/train_metrics.json").read_text())["steps"] == 4
    assert json.loads((root / "data/style/models/meta/train_metrics.json").read_text())["steps"] == 3
    assert {p.name for p in (root / "data/style/onnx").glob("*.onnx")} == {
        "fast_starry_night.onnx", "metanet.onnx", "transformer.onnx"}
    assert style["onnx"]["meta_max_abs_diff_255"] <= 0.002
    # the report's "Style transfer" table: the metrics and the MLflow run of each training, which exist
    assert "## Style transfer" in report
    runs = style["mlflow_runs"]
    fast_run = _mlflow_run(root, runs["fast:starry_night"])
    assert fast_run.data.params["style"] == "starry_night" and fast_run.data.params["fast.steps"] == "4"
    assert _mlflow_run(root, runs["meta"]).info.status == "FINISHED"
    fast = next(line for line in report.splitlines() if line.startswith("| fast:starry_night |"))
    assert fast.startswith(f"| fast:starry_night | {m['fast_starry_night_style_loss_over_gatys']:.3f} | "
                           f"{m['fast_starry_night_content_loss_over_gatys']:.3f} |")
    assert "untrained" not in report and "unstyled" not in report
    assert f"| 4 | `runs:/{runs['fast:starry_night']}` |" in fast
    meta = next(line for line in report.splitlines() if line.startswith("| meta (held-out paintings) |"))
    assert meta.startswith(f"| meta (held-out paintings) | {m['meta_held_out_style_loss_over_gatys']:.3f} |")
    meta_train = next(line for line in report.splitlines() if line.startswith("| meta (training paintings) |"))
    assert meta_train.startswith(f"| meta (training paintings) | {m['meta_train_style_loss_over_gatys']:.3f} |")
    assert f"| 3 | `runs:/{runs['meta']}` |" in meta
    assert "ms/image (32²)" in report and "| train_meta | up to date (DVC) |" in report


def test_registry_aliases_challenger_the_trained_run_and_keep_the_champion(flow_run):
    root, result = flow_run["root"], flow_run["result"]
    champion, challenger = _alias(root, "champion"), _alias(root, "challenger")
    run_id = json.loads((root / "data/models/espcn_x3/mlflow_run.json").read_text())["run_id"]
    assert str(challenger.version) == str(result["decisions"]["espcn_x3"]["version"]) == "3"
    assert challenger.run_id == run_id
    assert str(champion.version) == "1" and champion.run_id != run_id
    assert float(champion.tags["metric.psnr"]) == pytest.approx(flow_run["decisions_before"]["espcn_x3"]["psnr"])
    run = _mlflow_run(root, run_id)
    # the flow's metrics (read from metrics.json) agree with what the evaluate stage logged into the run
    assert run.data.metrics["eval_psnr"] == pytest.approx(result["metrics"]["espcn_x3"]["psnr"])
    assert float(challenger.tags["metric.psnr"]) == pytest.approx(run.data.metrics["eval_psnr"])
    assert run.data.params["train.steps"] == "6"


def test_markdown_artifact_has_metrics_decision_and_mlflow_run(flow_run):
    root, result, report = flow_run["root"], flow_run["result"], flow_run["artifact"]
    assert report == result["report"]
    m = result["metrics"]["espcn_x3"]
    run_id = json.loads((root / "data/models/espcn_x3/mlflow_run.json").read_text())["run_id"]
    row = next(line for line in report.splitlines() if line.startswith("| espcn_x3 | ") and "runs:/" in line)
    assert f"| {m['psnr']:.2f} | {m['ssim']:.4f} | {m['bicubic_psnr']:.2f} | {m['bicubic_ssim']:.4f} |" in row
    assert f"`runs:/{run_id}`" in row and "| 6 |" in row
    assert "| espcn_x3 | sr-x3 | 3 | **kept champion** |" in report
    assert "MLflow tracking URI: `project:mlruns.db`" in report  # mlflow_run.json records it relative
    assert "| train@espcn_x3 | ran |" in report and "`recipes.espcn.steps=6`" in report
    assert "| compare | ran |" in report and "| benchmark | ran |" in report
    assert "| fetch | up to date (DVC) |" in report and "| train_meta | up to date (DVC) |" in report


def test_training_is_tagged_gpu_under_a_concurrency_limit(flow_run):
    limit = flow_run["gpu_limit"]
    assert limit.tag == "gpu" and limit.concurrency_limit == 1 and not limit.active_slots
    assert flow_run["result"]["gpu_limit"] == {"tag": "gpu", "limit": 1}
    assert len(flow_run["train_runs"]) == 1 and "gpu" in flow_run["train_runs"][0].tags
    assert sorted(r.name for r in flow_run["style_train_runs"]) == ["train_meta", "train_style@starry_night"]
    assert all("gpu" in r.tags for r in flow_run["style_train_runs"])
    (_, end_first), (start_second, _) = flow_run["gpu_intervals"]
    assert start_second >= end_first  # the second gpu task waited for the slot
    assert start_second - end_first < 10  # ... about a second (conftest: slot wait 1 s, not Prefect's 30 s)


def test_outputs_were_pushed_to_the_dvc_remote(flow_run):
    root = flow_run["root"]
    assert sum(1 for p in (root.parent / "remote").rglob("*") if p.is_file()) > 5
    status = subprocess.run([DVC, "status", "-c"], cwd=root, capture_output=True, text=True)
    assert status.returncode == 0 and "missing:" not in status.stdout, status.stdout
    # everything of the flow's pipeline is in the remote; left out: fsrcnn_x3's outputs (its stages were not
    # part of this run: tiny_repro made them and nobody pushed them)
    new = [line.split()[-1] for line in status.stdout.splitlines() if "new:" in line]
    assert new and all("fsrcnn_x3" in path for path in new), status.stdout


def test_bad_override_fails_before_anything_is_written(tmp_path):
    from pipelines.workspace import params_changes
    from srstyle.config import ConfigError

    (tmp_path / "params.yaml").write_text("# keep me\nseed: 0\nruns:\n  espcn_x3: {model: espcn, scale: 3}\n")
    before = (tmp_path / "params.yaml").read_text()
    with pytest.raises(ConfigError, match="trian"):
        params_changes(tmp_path, None, None, {"trian.steps": 5})
    changes, text = params_changes(tmp_path, 2, None, {"train.steps": 5})
    assert changes == {"runs": {"espcn_x2": {"model": "espcn", "scale": 2}}, "train.steps": 5}
    assert text.startswith("# keep me") and "steps: 5" in text  # comments kept
    assert (tmp_path / "params.yaml").read_text() == before  # nothing written outside a flow run


@pytest.mark.slow
def test_unchanged_rerun_is_skipped_by_dvc_and_builds_the_bento(flow_run, tmp_path):
    """On a copy of the module's project after its flow run (the tests above read the original, which stays as
    they expect): the copy's workspace, DVC cache, dvc.lock and MLflow store are those of that run."""
    from prefect.artifacts import Artifact

    from pipelines.dvc_graph import downstream
    from pipelines.retrain import REPORT_KEY, retrain
    from tests.helpers import copy_project

    first = flow_run
    root = copy_project(first["root"], tmp_path / "proj")
    t0 = time.perf_counter()
    os.environ["BENTOML_HOME"] = str(tmp_path / "bentoml")
    # the same parameters again, with `bentoml build` this time (what `make package` does);
    # style=False: the style chain is left out of this run (and of its report)
    second = retrain(project_dir=str(root), models=["espcn"], scale=3, overrides=FLOW_OVERRIDES, build_bento=True,
                     style=False)
    print(f"unchanged rerun with bentoml build: {time.perf_counter() - t0:.1f} s; {second['steps'][-1]}")
    report = Artifact.get(REPORT_KEY).data
    assert report == second["report"]
    assert [s["stage"] for s in second["steps"] if s["ran"]] == ["package"]  # DVC skipped every stage
    style_chain = downstream(root, ["fetch_style"])  # curves too: it plots the style losses
    assert {"train_meta", "curves"} <= style_chain
    assert [s["stage"] for s in second["steps"][:-1]] == [s for s in first["result"]["stages"] if s not in style_chain]
    assert second["decisions"] == first["result"]["decisions"]
    assert second["style"] is None and "## Style transfer" not in report
    assert "| train@espcn_x3 | up to date (DVC) |" in report and "`recipes.espcn.steps=6`" in report
    bento = second["package"]["bento"]
    assert bento and ":" in bento and (tmp_path / "bentoml/bentos" / bento.replace(":", "/")).is_dir()
    assert report.count(f"Bento: `{bento}`") == 1
    # the Bento serves the champion (version 1), not the weaker challenger the first run trained
    assert (root / "serve_models/sr-x3.onnx").read_bytes() == (first["root"] / "serve_models/sr-x3.onnx").read_bytes()


# --- DVC's run cache and MLflow ----------------------------------------------------------------------------------

def _dvc(root, *args, env):
    proc = subprocess.run([DVC, *args], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _onnx_model_logged(root: Path, run_id: str) -> bool:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    experiment = mlflow.get_run(run_id).info.experiment_id
    models = mlflow.search_logged_models(experiment_ids=[experiment], filter_string=f"source_run_id = '{run_id}'",
                                         output_format="list")
    return any(m.name == "onnx_model" for m in models)


@pytest.mark.slow
def test_retrained_run_gets_its_onnx_model_and_run_cache_restores_stay_consistent(flow_run, tiny_repro, tmp_path):
    """On a copy of the project after the flow run: tiny_repro trained espcn_x3 (MLflow run A) and the flow
    retrained it (run B, 6 steps), so evaluate and export reran for B. Then tiny_repro's dvc.lock comes back (a
    commit checked out): train reruns (run C); downstream stages may come from DVC's run cache, and whatever
    they restore must still point at C's logged ONNX model, never at A's or B's."""
    import mlflow

    from tests.helpers import copy_project, tiny_env

    env = tiny_env()
    root = copy_project(flow_run["root"], tmp_path / "proj")
    record = root / "data/models/espcn_x3/mlflow_run.json"
    first = json.loads((tiny_repro[0] / "data/models/espcn_x3/mlflow_run.json").read_text())["run_id"]
    second = json.loads(record.read_text())["run_id"]
    assert second != first and "evaluate@espcn_x3" in RERUN and "export_onnx@espcn_x3" in RERUN
    assert _onnx_model_logged(root, second)  # the retrained run got its own ONNX model
    # back to the first lock file (a commit checked out; checkpoints are not DVC-cached, as in a fresh clone):
    # train reruns, downstream may come from the run cache
    (root / "dvc.lock").write_text(flow_run["lock_before"])
    shutil.rmtree(root / "data/models/espcn_x3/checkpoints")
    log = _dvc(root, "repro", "promote", env=env)
    assert "Running stage 'train@espcn_x3'" in log
    third = json.loads(record.read_text())["run_id"]
    assert third not in (first, second) and _onnx_model_logged(root, third)
    # promotion from the workspace's state works, and every registered version points at a logged ONNX model
    _dvc(root, "repro", "--force", "--single-item", "promote", env=env)
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name = 'sr-x3'")
    assert len(versions) >= 4  # tiny_repro's two, the flow's, this one
    for mv in versions:
        assert _onnx_model_logged(root, mv.run_id), mv.version
    decisions = json.loads((root / "data/registry/decisions.json").read_text())
    current = next(mv for mv in versions if str(mv.version) == str(decisions["espcn_x3"]["version"]))
    assert current.run_id == third
