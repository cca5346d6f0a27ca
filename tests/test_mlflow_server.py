"""Training against a real `mlflow server` process on 127.0.0.1 (SQLite backend, proxied artifact store),
selected by MLFLOW_TRACKING_URI alone: the same command line `make mlflow-server` runs."""

import json
import sys
from pathlib import Path

import mlflow
import pytest

from srstyle.config import parse_params
from srstyle.data.patches import make_patches
from srstyle.train.sr import train_sr
from tests.helpers import make_corpus
from tests.servers import free_port, server


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}",
           "--artifacts-destination", str(base / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    url = f"http://127.0.0.1:{port}"
    with server(cmd, f"{url}/health", base / "server.log") as (_, startup):
        print(f"mlflow server ready in {startup:.1f} s")
        yield url, base


def test_training_logs_to_the_server(mlflow_server, tmp_path, monkeypatch):
    url, base = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    raw, validated = make_corpus(tmp_path / "data")
    params = parse_params({
        "patches": {"scales": [3], "hr_size": 24, "stride": 12},
        "train": {"steps": 6, "batch_size": 4, "checkpoint_every": 3, "val_every": 3, "log_every": 3, "threads": 1},
        "models": {"espcn": {"channels": [8, 4]}},
        "tracking": {"experiment": "server-test"},
    })
    make_patches(validated, raw, tmp_path / "patches", params.patches, 0, 10**7, progress=False)
    result = train_sr(params, "espcn_x3", tmp_path / "patches", tmp_path / "model", tracking_root=tmp_path,
                      progress=False)

    assert not (tmp_path / "mlruns.db").exists() and not (tmp_path / "mlartifacts").exists()  # nothing local
    record = json.loads((tmp_path / "model/mlflow_run.json").read_text())
    assert record["tracking_uri"] == url and record["run_id"] == result.run_id

    client = mlflow.MlflowClient(tracking_uri=url)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["model"] == "espcn"
    assert client.get_experiment(run.info.experiment_id).name == "server-test"
    assert [m.step for m in client.get_metric_history(result.run_id, "train_loss")] == [3, 6]
    assert run.data.metrics["best_val_psnr"] == pytest.approx(result.best_val_psnr)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied through the server
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"curve.csv", "val_patches_lr_bicubic_sr_hr.png"} <= artifacts
    stored = {p.name for p in (base / "artifacts").rglob("*") if p.is_file()}
    assert {"curve.csv", "val_patches_lr_bicubic_sr_hr.png"} <= stored  # the server wrote them, not the client
    # The logged model loads back through the server by URI alone.
    mlflow.set_tracking_uri(url)
    try:
        model = mlflow.pytorch.load_model(f"runs:/{result.run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)
    assert model.scale == 3
