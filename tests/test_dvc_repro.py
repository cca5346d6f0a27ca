"""`dvc repro` itself, on a copy of this project with tiny training settings (the real pipeline file)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import make_tiny_project

REPO = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_tiny_project(tmp_path_factory.mktemp("proj"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SRSTYLE_ROOT", None)
    first = _run(["dvc", "repro"], root, env)
    return root, env, first


def test_repro_runs_every_stage_and_writes_outputs(project):
    root, _, log = project
    for stage in ("fetch", "validate", "patches", "train@espcn_x3", "train@fsrcnn_x3", "evaluate@espcn_x3",
                  "evaluate@fsrcnn_x3", "export_onnx@espcn_x3", "export_onnx@fsrcnn_x3", "compare",
                  # the style chain is part of the pipeline too (tiny settings: tests.helpers.TINY_STYLE)
                  "fetch_style", "validate_style", "train_style@starry_night", "train_meta", "evaluate_style",
                  "export_style_onnx"):
        assert f"Running stage '{stage}'" in log, stage
    assert (root / "data/compare/all_models.png").is_file()
    summary = json.loads((root / "data/compare/summary.json").read_text())
    assert set(summary) == {"espcn_x3", "fsrcnn_x3"}
    metrics = json.loads((root / "data/eval/espcn_x3/metrics.json").read_text())
    assert {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "psnr_gain"} <= set(metrics)
    assert (root / "data/onnx/espcn_x3/espcn_x3.onnx").is_file()
    assert (root / "mlruns.db").is_file() and (root / "dvc.lock").is_file()
    assert json.loads((root / "data/quarantine/report.json").read_text())["quarantined"] == 0
    style = json.loads((root / "data/style/eval/metrics.json").read_text())
    assert {"fast_starry_night_style_loss_ratio_to_untrained", "meta_held_out_style_loss_ratio_to_unstyled"} <= set(style)
    assert (root / "data/style/onnx/metanet.onnx").is_file()


def test_second_repro_is_a_no_op(project):
    root, env, _ = project
    log = _run(["dvc", "repro"], root, env)
    assert "Running stage" not in log
    assert "up to date" in log


def test_metrics_show_prints_model_and_bicubic(project):
    root, env, _ = project
    out = _run(["dvc", "metrics", "show"], root, env)
    assert "bicubic_psnr" in out and "psnr_gain" in out and "max_abs_diff" in out
    assert "data/eval/espcn_x3/metrics.json" in out and "data/eval/fsrcnn_x3/metrics.json" in out
