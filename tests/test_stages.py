"""Stages are entry points of a few lines over srstyle.pipeline_steps, and a foreach stage never falls back to
a default run name: no name, or one params.yaml does not list, exits with the names it accepts."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPS_STAGES = ("compare", "benchmark", "export_onnx", "export_style_onnx", "evaluate", "evaluate_style", "curves")


@pytest.mark.parametrize("stage", OPS_STAGES)
def test_stage_is_a_short_entry_point(stage):
    code = [line for line in (REPO / f"stages/{stage}.py").read_text().splitlines()
            if line.strip() and not line.startswith(("#", '"""')) and not line.endswith('"""')]
    assert len(code) <= 6, code
    assert any("stage_main(" in line for line in code)


@pytest.mark.parametrize("stage", ["evaluate", "export_onnx"])
@pytest.mark.parametrize("argv", [[], ["nope_x3"], ["espcn_x3", "fsrcnn_x3"]])
def test_run_name_is_required_and_checked(stage, argv, tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(REPO / f"stages/{stage}.py"), *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "usage:" in proc.stderr and "espcn_x3" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlruns.db").exists()
