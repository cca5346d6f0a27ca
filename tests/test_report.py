"""`srstyle report` / the end of `make run`: a screenful (<= 120 columns) with every run's gain and the
champion, style ratios and speed, the pictures, and how to open MLflow and Prefect."""

import json
import subprocess
import sys
from pathlib import Path

from srstyle.report import champions, collect, mlflow_run_url, render, run_link_markdown

REPO = Path(__file__).resolve().parents[1]
RUNS = {"espcn_x3": {"model": "espcn", "scale": 3}, "fsrcnn_x3": {"model": "fsrcnn", "scale": 3},
        "edsr_x4": {"model": "edsr", "scale": 4}, "srgan_x4": {"model": "srgan", "scale": 4}}


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def finished_project(root: Path) -> Path:
    """The outputs a finished pipeline leaves (values as the stages write them), scale 3 Y and scale 4 RGB."""
    psnr = {"espcn_x3": 27.5, "fsrcnn_x3": 27.1, "edsr_x4": 25.9, "srgan_x4": 24.2}
    unseen = {"espcn_x3": 0.98, "fsrcnn_x3": 0.31, "edsr_x4": 1.23, "srgan_x4": -0.45}
    for run, spec in RUNS.items():
        _write(root / f"data/eval/{run}/metrics.json", {"psnr": psnr[run], "ssim": 0.81, "bicubic_psnr": 25.0,
                                                        "bicubic_ssim": 0.75, "psnr_gain": psnr[run] - 25.0,
                                                        "unseen_psnr_gain": unseen[run], "scale": spec["scale"]})
        (root / f"data/eval/{run}/comparison.png").write_bytes(b"png")
        _write(root / f"data/models/{run}/mlflow_run.json",
               {"run_id": f"{run}000000", "experiment_id": "1", "tracking_uri": f"sqlite:///{root}/mlruns.db"})
    _write(root / "data/registry/decisions.json", {
        "espcn_x3": {"registered_model": "sr-x3", "version": "1", "outcome": "first champion", "champion_version": None},
        "fsrcnn_x3": {"registered_model": "sr-x3", "version": "2", "outcome": "kept champion", "champion_version": "1"},
        "edsr_x4": {"registered_model": "sr-x4", "version": "1", "outcome": "first champion", "champion_version": None},
        "srgan_x4": {"registered_model": "sr-x4", "version": "2", "outcome": "kept champion", "champion_version": "1"}})
    _write(root / "data/style/eval/metrics.json", {
        "fast_starry_night_style_loss_ratio_to_untrained": 0.4123, "fast_starry_night_ms_512": 35.25,
        "fast_starry_night_style_loss_over_gatys": 1.4471, "fast_starry_night_content_loss_over_gatys": 0.8261,
        "fast_starry_night_max_dark_blob_fraction": 0.00073, "fast_starry_night_max_high_freq_ratio": 4.53,
        "fast_starry_night_max_high_freq_over_gatys": 1.21,
        "meta_train_style_loss_over_gatys": 1.9375, "meta_held_out_style_loss_over_gatys": 2.4211,
        "meta_held_out_style_loss_ratio_to_unstyled": 0.6031, "meta_ms_512": 61.0,
        "gatys_max_dark_blob_fraction": 0.0, "gatys_max_high_freq_ratio": 4.56})
    _write(root / "data/style/registry/decisions.json", {
        "style-starry_night": {"registered_model": "style-starry_night", "version": "3", "outcome": "promoted",
                               "champion_version": "2"},
        "style-meta": {"registered_model": "style-meta", "version": "2",
                       "outcome": "challenger only (inside dvc exp run); would be promoted", "champion_version": "1"}})
    return root


def test_summary_is_narrow_and_names_every_gain_and_the_champions(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    root = finished_project(tmp_path)
    text = render(collect(root, RUNS, ["starry_night"]))
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120 and len(lines) < 40
    row = {line.split()[0]: line for line in lines if line.startswith("  ") and line.split()[0] in RUNS}
    assert set(row) == set(RUNS)
    assert "+2.50" in row["espcn_x3"] and "yes (sr-x3 v1)" in row["espcn_x3"] and "x3" in row["espcn_x3"]
    assert [row[r].split()[5] for r in RUNS] == ["+0.98", "+0.31", "+1.23", "-0.45"]  # the unseen-photo gain column
    assert "+2.10" in row["fsrcnn_x3"] and row["fsrcnn_x3"].split()[-1] == "no"
    assert "x4" in row["edsr_x4"] and "+0.90" in row["edsr_x4"] and "yes (sr-x4 v1)" in row["edsr_x4"]
    assert "-0.80" in row["srgan_x4"] and "yes" not in row["srgan_x4"]
    fast = next(line for line in lines if line.startswith("  fast:starry_night"))
    meta = next(line for line in lines if line.startswith("  meta (held-out"))
    meta_train = next(line for line in lines if line.startswith("  meta (training"))
    gatys = next(line for line in lines if line.startswith("  gatys"))
    # the style models are shown against Gatys, never against an untrained net or the unstyled photo
    assert fast.split()[1:7] == ["1.447", "0.826", "0.073", "4.53", "1.21", "35.2"]
    assert "0.412" not in text and "0.603" not in text and "untrained" not in text
    assert meta.split()[3] == "2.421" and "61.0" in meta and meta_train.split()[3] == "1.938"
    assert gatys.split()[2:5] == ["1.000", "1.000", "0.000"]
    assert fast.endswith("yes (style-starry_night v3)") and meta.endswith("no")
    assert "data/eval/edsr_x4/comparison.png" in text
    assert "make mlflow-server" in text and "make prefect-ui" in text and "dvc metrics diff" in text


def test_long_names_and_missing_outputs_stay_within_the_width(tmp_path):
    runs = {"r" * 200: {"model": "espcn", "scale": 3}}
    text = render(collect(tmp_path, runs, ["s" * 150]), width=120)
    assert max(map(len, text.splitlines())) <= 120
    assert "not evaluated yet" in text


def test_mlflow_links_are_urls_for_a_server_only():
    record = {"run_id": "abc123def", "experiment_id": "4", "tracking_uri": "http://127.0.0.1:5000"}
    assert mlflow_run_url(record) == "http://127.0.0.1:5000/#/experiments/4/runs/abc123def"
    assert run_link_markdown(record) == "[abc123de](http://127.0.0.1:5000/#/experiments/4/runs/abc123def)"
    sqlite = {**record, "tracking_uri": "sqlite:////x/mlruns.db"}
    assert mlflow_run_url(sqlite) is None and run_link_markdown(sqlite) == "`runs:/abc123def`"
    assert run_link_markdown(sqlite, "http://mlflow.team:5000/").startswith("[abc123de](http://mlflow.team:5000/#/")


def test_champion_follows_the_decisions_in_order():
    decisions = {"a": {"registered_model": "sr-x3", "version": "1", "outcome": "first champion"},
                 "b": {"registered_model": "sr-x3", "version": "2", "outcome": "promoted", "champion_version": "1"},
                 "c": {"registered_model": "sr-x3", "version": "3", "outcome": "kept champion", "champion_version": "2"}}
    assert champions(decisions) == {"sr-x3": "2"}


def test_module_entry_point_prints_the_report(tmp_path):
    root = finished_project(tmp_path)
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    proc = subprocess.run([sys.executable, "-m", "srstyle.report", "--root", str(root)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "espcn_x3" in proc.stdout and "yes (sr-x3 v1)" in proc.stdout
