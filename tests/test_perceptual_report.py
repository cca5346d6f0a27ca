"""`srstyle report` shows NIQE and vgg_distance for every SR run, bicubic and the HR photos, and both choices."""

import json

from srstyle.report import collect, render
from tests.test_report import RUNS, finished_project


def test_sr_table_has_the_perceptual_columns_bicubic_hr_and_the_perceptual_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = finished_project(tmp_path)
    niqe = {"espcn_x3": 6.11, "fsrcnn_x3": 6.22, "edsr_x4": 7.33, "srgan_x4": 5.44}
    for run, spec in RUNS.items():
        path = root / f"data/eval/{run}/metrics.json"
        m = json.loads(path.read_text())
        m.update(niqe=niqe[run], vgg_distance=0.1234, bicubic_niqe=8.0 + spec["scale"], hr_niqe=3.0 + spec["scale"],
                 bicubic_vgg_distance=0.5 + spec["scale"] / 100)
        path.write_text(json.dumps(m))
    (root / "data/registry/perceptual_decisions.json").write_text(json.dumps({
        "edsr_x4": {"registered_model": "sr-x4", "version": "1", "outcome": "first champion", "champion_version": None},
        "srgan_x4": {"registered_model": "sr-x4", "version": "2", "outcome": "promoted", "champion_version": "1"}}))
    text = render(collect(root, RUNS, ["starry_night"]))
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120 and len(lines) < 45
    assert "NIQE" in text and "VGG dist." in text and "@perceptual" in text
    srgan = next(line for line in lines if line.startswith("  srgan_x4"))
    edsr = next(line for line in lines if line.startswith("  edsr_x4"))
    assert "5.44" in srgan and "0.1234" in srgan and "yes (sr-x4 v2)" in srgan
    assert srgan.split()[-1] == "no"  # the PSNR champion is still EDSR
    assert "yes (sr-x4 v1)" in edsr and edsr.count("yes") == 1  # PSNR champion, no longer the perceptual one
    bicubic = [line for line in lines if line.startswith("  bicubic")]
    hr = [line for line in lines if line.startswith("  HR (ground truth)")]
    assert len(bicubic) == 2 and "11.00" in bicubic[0] and "0.5300" in bicubic[0] and "12.00" in bicubic[1]
    assert len(hr) == 2 and "6.00" in hr[0] and "7.00" in hr[1]
    # the rows of a scale sit together: bicubic, its runs, its HR photos
    order = [line.split()[0] for line in lines if line.startswith(("  bicubic", "  HR", "  espcn", "  fsrcnn", "  edsr", "  srgan"))]
    assert order == ["bicubic", "espcn_x3", "fsrcnn_x3", "HR", "bicubic", "edsr_x4", "srgan_x4", "HR"]
    assert "not evaluated yet" not in text
