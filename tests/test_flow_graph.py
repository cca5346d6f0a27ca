"""The retrain flow is the DVC graph: its tasks come from dvc.yaml (a stage added there runs with no edit of the
flow), whether a stage ran comes from dvc.lock, and a stage's lines reach the Prefect task log while it runs.
Synthetic stages (tests.helpers.make_flow_project) keep this to seconds."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import make_flow_project


@pytest.fixture(scope="module")
def harness(prefect_session_api):
    """The session's Prefect server (tests/conftest.py); each test reads only its own flow run's task runs."""
    return prefect_session_api


def _task_runs(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def _run(root: Path, **kwargs):
    from pipelines.retrain import retrain

    state = retrain(project_dir=str(root), package_models=False, return_state=True, **kwargs)
    return state.result(), state.state_details.flow_run_id


def test_stage_added_to_dvc_yaml_runs_and_unchanged_rerun_is_skipped(harness, tmp_path):
    root = make_flow_project(tmp_path / "proj")
    first, _ = _run(root)
    assert first["stages"] == ["fetch", "train"]
    assert [(s["stage"], s["ran"]) for s in first["steps"]] == [("fetch", True), ("train", True)]
    # one more stage in dvc.yaml: the flow runs it, and DVC's state says the other two are up to date
    with open(root / "dvc.yaml", "a") as f:
        f.write("  summary:\n    cmd: python step.py summary\n    deps: [out/train.txt]\n    outs: [out/summary.txt]\n")
    second, flow_run_id = _run(root)
    assert [(s["stage"], s["ran"]) for s in second["steps"]] == [("fetch", False), ("train", False), ("summary", True)]
    assert (root / "out/summary.txt").is_file()
    assert "| summary | ran |" in second["report"] and "| train | up to date (DVC) |" in second["report"]
    third, _ = _run(root)
    assert not any(s["ran"] for s in third["steps"])
    status = subprocess.run(["dvc", "status", "--json"], cwd=root, capture_output=True, text=True, check=True)
    assert json.loads(status.stdout) == {}
    names = {r.name: r for r in _task_runs(flow_run_id)}
    assert set(names) == {"fetch", "train", "summary"}
    assert "gpu" in names["train"].tags and "gpu" not in names["fetch"].tags


def test_stage_lines_reach_the_task_log_while_it_runs(harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

    root = make_flow_project(tmp_path / "proj", pause=4)
    result, flow_run_id = _run(root)
    train = next(r for r in _task_runs(flow_run_id) if r.name == "train")
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(task_run_id=LogFilterTaskRunId(any_=[train.id])))
        early = [log for log in logs if "train: early line" in log.message]
        late = [log for log in logs if "train: late line" in log.message]
        if (early and late) or time.monotonic() > deadline:  # the log handler sends in batches
            break
        time.sleep(0.5)
    assert early and late, [log.message for log in logs]
    late = late[0]
    # the early line was logged when the stage printed it, ~4 s before the stage ended
    assert (late.timestamp - early[0].timestamp).total_seconds() > 3
    assert (train.end_time - early[0].timestamp).total_seconds() > 3


def test_settings_table_retries_fetch_and_tags_training():
    from pipelines.retrain import stage_settings, stage_task

    fetch = stage_task("fetch_style")
    assert fetch.retries == 3 and fetch.retry_delay_seconds == [10, 20, 40] and fetch.retry_jitter_factor == 0.5
    for stage in ("train@espcn_x3", "train_style@starry_night", "train_meta"):
        assert stage_task(stage).tags == {"gpu"}, stage
    assert not stage_task("evaluate@espcn_x3").tags and stage_task("evaluate@espcn_x3").retries == 0
    assert stage_task("train@edsr_x4").name == "train"
    assert stage_settings("benchmark")["timeout_s"] > 0


def test_stage_order_follows_the_real_dvc_yaml():
    from pipelines.dvc_graph import stage_order

    repo = Path(__file__).resolve().parents[1]
    order = stage_order(repo)
    assert order[:3] == ["fetch", "validate", "patches"]
    for stage in ("compare", "benchmark", "promote", "curves", "evaluate_style"):
        assert stage in order
    for run in ("espcn_x3",):
        assert order.index(f"train@{run}") < order.index(f"evaluate@{run}") < order.index("promote")
        assert order.index(f"export_onnx@{run}") < order.index("promote")
    assert order.index("train_meta") < order.index("curves")
