"""`dvc repro` itself, on a copy of this project with tiny training settings (the real pipeline file).

The repro is the session's ``tiny_repro`` (tests/conftest.py), also the starting point of test_faults_flow's run
cache test; the tests here only read it (a test that commits works on a copy)."""

import json
import sys

import pytest

from tests.helpers import copy_project


def _run(cmd, cwd, env):
    import subprocess

    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture
def project(tiny_repro):
    return tiny_repro


def test_repro_runs_every_stage_and_writes_outputs(project):
    root, _, log = project
    for stage in ("fetch", "validate", "patches", "train@espcn_x3", "train@fsrcnn_x3", "evaluate@espcn_x3",
                  "evaluate@fsrcnn_x3", "export_onnx@espcn_x3", "export_onnx@fsrcnn_x3", "compare",
                  # the style chain is part of the pipeline too (tiny settings: tests.helpers.TINY_STYLE)
                  "fetch_style", "validate_style", "train_style@starry_night", "train_meta", "evaluate_style",
                  "export_style_onnx", "benchmark", "promote", "curves"):
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


def test_report_of_the_finished_project_fits_120_columns_with_every_gain_and_the_champion(project):
    root, env, _ = project
    out = _run([sys.executable, "-m", "srstyle.report"], root, env)
    lines = out.splitlines()
    assert max(map(len, lines)) <= 120 and len(lines) < 40
    decisions = json.loads((root / "data/registry/decisions.json").read_text())
    for run in ("espcn_x3", "fsrcnn_x3"):
        m = json.loads((root / f"data/eval/{run}/metrics.json").read_text())
        row = next(line for line in lines if line.split()[:1] == [run])
        assert f"{m['psnr_gain']:+.2f}" in row and f"{m['psnr']:.2f}" in row and "x3" in row
    champions = [line.split()[0] for line in lines if "yes (sr-x3 v" in line]
    assert len(champions) == 1 and champions[0] in decisions
    assert "fast:starry_night" in out and "data/compare/all_models.png" in out and "make mlflow-server" in out


def test_plots_show_writes_one_offline_page_with_a_curve_per_run(project, tmp_path):
    import re

    root, env, _ = project
    # the page template comes from .dvc/config (`plots.html_template`), as for `make plots`; the page is
    # written outside the shared project
    _run(["dvc", "plots", "show", "-o", str(tmp_path / "plots_page")], root, env)
    html = (tmp_path / "plots_page/index.html").read_text()
    # nothing loaded from elsewhere: no script/link/img pointing at a URL (schema ids inside specs are not loads)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "cdn.jsdelivr" not in html and "vegaEmbed" in html
    for run in ("espcn_x3", "fsrcnn_x3"):
        assert f'"run": "{run}"' in html
    for field in ("train_loss", "val_psnr", "loss_style"):
        assert f'"{field}"' in html
    assert '"run": "meta"' in html and '"run": "fast:starry_night"' in html
    assert "comparison.png" in html and "curves.png" in html  # image plots
    assert (root / "data/plots/curves.png").stat().st_size > 10_000


def test_metrics_and_plots_diff_between_commits(project, tmp_path):
    root, env = copy_project(project[0], tmp_path / "proj"), project[1]  # a commit changes the project: a copy
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    _run([*git, "add", "-A"], root, env)
    _run([*git, "commit", "-q", "-m", "tiny project"], root, env)
    out = _run(["dvc", "metrics", "diff", "HEAD", "--all"], root, env)
    assert "data/eval/espcn_x3/metrics.json" in out and "psnr" in out
    _run(["dvc", "plots", "diff", "HEAD", "--html-template", "src/srstyle/assets/vega/dvc_plots.html",
          "-o", "plots_diff"], root, env)
    html = (root / "plots_diff/index.html").read_text()
    assert '"rev": "HEAD"' in html and '"rev": "workspace"' in html
