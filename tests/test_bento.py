"""`make package` end to end: champions out of the project's registry, pinned serving requirements, `bentoml
build`; then a fresh venv made from the Bento's own requirements file only (no torch, no srstyle install),
`bentoml serve` of the built Bento, and an upscale and a stylize through it."""

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import httpx
import numpy as np
import pytest

from srstyle.config import EngineConfig, TrackingConfig
from srstyle.predict import SRPredictor
from srstyle.tracking import setup
from tests.helpers import photo
from tests.service_helpers import REPO, STYLE, decode, encode, model_subset, wait_ready
from tests.servers import free_port, server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _run(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_built_bento_runs_in_a_fresh_venv(model_dir, tmp_path):
    import mlflow

    from srstyle.export.precision import evaluate_precisions
    from srstyle.model_registry import promote, register_onnx

    proj = tmp_path / "proj"
    proj.mkdir()
    for item in ("bentofile.yaml", "bento_service.py", "params.yaml", "constraints.txt"):
        shutil.copy(REPO / item, proj / item)
    shutil.copytree(REPO / "src", proj / "src", ignore=shutil.ignore_patterns("__pycache__"))
    models = model_subset(model_dir, tmp_path / "models", ["sr-x3.onnx", f"style-{STYLE}.onnx", "style-meta.onnx",
                                                          "style-meta.transformer.onnx"])
    # the export stage's precision evaluation of the SR model travels with it (unseen photos only here)
    (tmp_path / "validated").mkdir()
    (tmp_path / "validated" / "manifest.json").write_text("[]")
    evaluate_precisions(models / "sr-x3.onnx", tmp_path / "validated", tmp_path)
    setup(TrackingConfig(), proj)
    try:
        for name, file, extra in (("sr-x3", "sr-x3.onnx", [models / "sr-x3.precision.json"]), (f"style-{STYLE}", f"style-{STYLE}.onnx", []),
                                  ("style-meta", "style-meta.onnx", [models / "style-meta.transformer.onnx"])):
            with mlflow.start_run() as run:
                pass
            mv = register_onnx(name, run.info.run_id, models / file, {"score": 1.0}, {}, extra_files=extra)
            promote(name, mv.version, "score", 0.0)
    finally:
        mlflow.set_tracking_uri(None)

    bindir = Path(sys.executable).parent
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "BENTOML_HOME": str(tmp_path / "bentoml"),
           "BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(proj / "src"),
           "SRSTYLE_ROOT": str(proj)}
    # the three commands of `make package`
    _run([sys.executable, "-m", "srstyle.cli", "export-champions", "--out", "serve_models"], proj, env)
    _run([sys.executable, "-m", "srstyle.serving.package"], proj, env)
    _run([str(bindir / "bentoml"), "build", "-f", "bentofile.yaml"], proj, env)
    bento = next((tmp_path / "bentoml" / "bentos" / "srstyle").glob("*/bento.yaml")).parent
    requirements = bento / "env" / "python" / "requirements.txt"
    pins = [line.split("==")[0] for line in requirements.read_text().splitlines() if "==" in line]
    assert {"bentoml", "onnxruntime", "numpy", "pillow"} <= set(pins) and "torch" not in pins and "mlflow" not in pins
    assert all("==" in line for line in requirements.read_text().splitlines() if line and not line.startswith("#"))
    assert sorted(p.name for p in (bento / "src" / "serve_models").iterdir()) == [
        "catalog.json", "sr-x3.onnx", "sr-x3.precision.json", "style-meta.onnx", "style-meta.transformer.onnx", f"style-{STYLE}.onnx"]

    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=True)
    _run([str(fresh / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(requirements)], tmp_path,
         {**env, "PYTHONPATH": ""})
    probe = subprocess.run([str(fresh / "bin" / "python"), "-c", "import torch"], capture_output=True)
    assert probe.returncode != 0  # the Bento's environment really has no torch

    port = free_port()
    serve_env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "SRSTYLE_ROOT")}
    serve_env["PATH"] = f"{fresh / 'bin'}:/usr/bin:/bin"
    cmd = [str(fresh / "bin" / "bentoml"), "serve", bento.name and f"srstyle:{bento.name}", "--host", "127.0.0.1",
           "--port", str(port)]
    with server(cmd, f"http://127.0.0.1:{port}/livez", tmp_path / "bento.log", env=serve_env, cwd=tmp_path):
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, timeout=180)
        info = httpx.post(f"{url}/models", json={}, timeout=10).json()
        assert sorted(info["models"]) == ["meta", "sr-x3", STYLE] and info["models"]["sr-x3"]["version"] == "1"
        # engine auto in the Bento weighed the variants against the bundled evaluation, not without one
        decision = info["models"]["sr-x3"]["engine"]
        assert decision["chosen"] and not any("no evaluation" in n for n in decision["notes"]), decision
        rgb = photo(40, 50, seed=8)
        r = httpx.post(f"{url}/upscale", files={"image": ("a.png", encode(rgb))}, data={"scale": "3"}, timeout=60)
        assert r.status_code == 200
        # the same variant the Bento's engine auto chose (OpenVINO bf16 where it measured faster and the bundled
        # evaluation allows it): the service must add nothing to that engine's output
        backend, precision = decision["chosen"].split("/")
        print(f"Bento engine auto: {decision['chosen']} ({decision['notes']})")
        expected = SRPredictor.from_onnx(models / "sr-x3.onnx", EngineConfig(backend=backend, precision=precision,
                                                                             intra_op_threads=1)).upscale(rgb)
        assert np.abs(decode(r.content).astype(int) - expected.astype(int)).max() <= 1
        r = httpx.post(f"{url}/stylize", files={"image": ("a.png", encode(rgb))}, data={"style": STYLE}, timeout=60)
        assert r.status_code == 200 and decode(r.content).shape == (40, 50, 3)
        assert "srstyle" in httpx.get(f"{url}/docs.json", timeout=10).json()["info"]["description"]
