"""Orchestration faults (issue 14): names that would reach a shell, two flow runs in one workspace, a stage that
hangs or is cancelled. DVC's run cache restoring stages that log into MLflow: test_flows.py (it continues on the
project a flow run retrained)."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import make_flow_project

REPO = Path(__file__).resolve().parents[1]
INJECTED = "x;touch${IFS}pwned"


# --- names -------------------------------------------------------------------------------------------------

def test_every_templated_name_in_a_dvc_command_is_quoted():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    cmds = [s.get("do", s)["cmd"] for s in stages.values()]
    templated = [c for c in cmds if "${" in c]
    assert templated, "the foreach stages pass their names on the command line"
    for cmd in templated:
        assert not re.search(r"(?<!')\$\{[^}]+\}(?!')", cmd), cmd


def test_quoted_name_reaches_the_stage_as_one_argument_and_runs_nothing(tmp_path):
    """What the quoting buys: DVC runs `cmd` through a shell; a quoted name arrives as data."""
    root = make_flow_project(tmp_path / "proj")
    (root / "argv.py").write_text("import sys\nopen('got.txt', 'a').write(sys.argv[1] + '\\n')\n")
    (root / "names.yaml").write_text(yaml.safe_dump({"names": {INJECTED: 1}}))
    (root / "dvc.yaml").write_text("vars: [names.yaml]\nstages:\n  echo:\n    foreach: ${names}\n    do:\n"
                                   "      cmd: python argv.py '${key}'\n")
    proc = subprocess.run(["dvc", "repro"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (root / "got.txt").read_text() == INJECTED + "\n"
    assert not (root / "pwned").exists()


def test_flow_parameters_with_shell_characters_are_refused_naming_the_parameter(tmp_path):
    from pipelines.workspace import params_changes

    root = make_flow_project(tmp_path / "proj")
    before = (root / "params.yaml").read_bytes()
    with pytest.raises(ValueError, match="`models`.*x;touch"):
        params_changes(root, 3, [INJECTED], None)
    with pytest.raises(ValueError, match="overrides"):
        params_changes(root, None, None, {"runs.a;b.model": "espcn"})
    with pytest.raises(ValueError, match="`scale`"):
        params_changes(root, "3; rm -rf /", None, None)
    assert (root / "params.yaml").read_bytes() == before and not (root / "pwned").exists()


# --- processes ---------------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _wait_dead(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


SPAWN = "sleep 300 & echo $! > child.pid; echo started; wait"


def test_timeout_kills_the_stage_and_everything_it_started(tmp_path):
    from pipelines.stage_process import StageTimeout, run_streaming

    lines = []
    t0 = time.monotonic()
    with pytest.raises(StageTimeout, match="timeout"):
        run_streaming(["bash", "-c", SPAWN], tmp_path, dict(os.environ), lines.append, timeout=2)
    assert time.monotonic() - t0 < 20 and lines == ["started"]
    assert _wait_dead(int((tmp_path / "child.pid").read_text()))


def test_cancellation_in_the_caller_kills_the_process_group(tmp_path):
    """Prefect cancels a flow by raising in its thread (TerminationSignal): the `finally` kills the group."""
    from pipelines.stage_process import run_streaming

    class Cancelled(BaseException):
        pass

    def on_line(line):
        raise Cancelled(line)

    with pytest.raises(Cancelled):
        run_streaming(["bash", "-c", SPAWN], tmp_path, dict(os.environ), on_line, timeout=60)
    assert _wait_dead(int((tmp_path / "child.pid").read_text()))


def test_a_failing_stage_reports_its_last_lines(tmp_path):
    from pipelines.stage_process import StageFailed, run_streaming

    with pytest.raises(StageFailed, match="(?s)exited with 3.*the reason"):
        run_streaming(["bash", "-c", "echo the reason; exit 3"], tmp_path, dict(os.environ), lambda _: None)


# --- two flow runs in one workspace --------------------------------------------------------------------------

FLOW_RUN = """
import json, sys
from pipelines.retrain import retrain
r = retrain(project_dir=sys.argv[1], overrides={"train.steps": int(sys.argv[2])}, package_models=False)
print("RESULT " + json.dumps({"changes": r["params_changes"], "ran": [s["stage"] for s in r["steps"] if s["ran"]]}))
"""


@pytest.fixture
def prefect_api(prefect_server):
    return prefect_server[0]  # the session's `prefect server start` (tests/conftest.py)


def test_two_concurrent_flow_runs_never_train_with_each_others_parameters(prefect_api, tmp_path):
    root = make_flow_project(tmp_path / "proj", pause=2)
    original = (root / "params.yaml").read_bytes()
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    procs = []
    for steps in (111, 222):
        procs.append(subprocess.Popen([sys.executable, "-c", FLOW_RUN, str(root), str(steps)], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        time.sleep(1.0)  # the second starts while the first is running its stages
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-4000:]
    results = [json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:]) for out in outputs]
    assert [r["changes"] for r in results] == [{"train.steps": 111}, {"train.steps": 222}]
    assert all(r["ran"] == ["fetch", "train"] for r in results)
    # every stage saw one value from its start to its end, and the runs did not interleave
    records = [line.split() for line in (root / "stages.log").read_text().splitlines()]
    assert all(start == end for _, start, end, _ in records), records
    assert [(name, start) for name, start, _, _ in records] in (
        [("fetch", "111"), ("train", "111"), ("fetch", "222"), ("train", "222")],
        [("fetch", "222"), ("train", "222"), ("fetch", "111"), ("train", "111")])
    # the overrides were for those runs only: params.yaml is back as it was; dvc.lock records the last run's
    assert (root / "params.yaml").read_bytes() == original
    assert not list(root.glob("params.yaml*tmp*"))
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert lock["stages"]["train"]["params"]["params.yaml"]["train.steps"] == int(records[-1][1])


def test_deployments_allow_one_run_at_a_time():
    from pipelines.deployments import CONCURRENCY

    assert CONCURRENCY == 1  # and test_prefect_server reads it back from the registered deployments
