"""MLflow set-up shared by every stage.

Default store: SQLite at an absolute path under the project root, artifacts in a local folder beside it;
neither is a DVC output (DVC deletes outputs before rerunning a stage). ``MLFLOW_TRACKING_URI`` points
everything at a team server instead, with no code change. Telemetry is off and model logging passes
explicit pip requirements, so nothing here calls the network.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from .config import TrackingConfig
from .io import read_json, write_json

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


def pip_requirements() -> list[str]:
    """The runtime requirements logged with every model (pinned to what is installed)."""
    from importlib.metadata import version

    return [f"torch=={version('torch')}", f"numpy=={version('numpy')}", f"srstyle=={version('srstyle')}"]


def tracking_uri(cfg: TrackingConfig, root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / cfg.store).resolve()}"


def setup(cfg: TrackingConfig, root: Path) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns the experiment id."""
    import mlflow

    uri = tracking_uri(cfg, root)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    elif uri.startswith("sqlite:") or uri.startswith("file:"):
        artifacts = (root / cfg.artifacts).resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        experiment_id = mlflow.create_experiment(cfg.experiment, artifact_location=artifacts.as_uri())
    else:
        experiment_id = mlflow.create_experiment(cfg.experiment)  # the server decides where artifacts go
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def run_record_path(model_dir: Path) -> Path:
    return model_dir / "mlflow_run.json"


def save_run_record(model_dir: Path, run_id: str, experiment_id: str, uri: str) -> None:
    write_json({"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri}, run_record_path(model_dir))


@contextlib.contextmanager
def resume_run(model_dir: Path, cfg: TrackingConfig, root: Path) -> Iterator:
    """Re-open the MLflow run that trained the model in ``model_dir`` (evaluate/export log into it).

    If that run is not in the current store (say the store was moved), a new run is started so nothing
    is lost, and it is tagged with the training run id.
    """
    import mlflow

    setup(cfg, root)
    record = read_json(run_record_path(model_dir)) if run_record_path(model_dir).is_file() else {}
    run_id = record.get("run_id")
    if run_id:
        try:
            mlflow.get_run(run_id)
        except Exception:  # noqa: BLE001 - any lookup failure means "not in this store"
            run_id = None
    if run_id:
        with mlflow.start_run(run_id=run_id) as run:
            yield run
    else:
        with mlflow.start_run(run_name=model_dir.name, tags={"srstyle.training_run": record.get("run_id", "")}) as run:
            yield run


def start_training_run(cfg: TrackingConfig, root: Path, out_dir: Path, run_name: str, run_id: str | None,
                       first: bool, params: dict, tags: dict):
    """Start (or, on resume, re-open) the MLflow run of a training; log params/tags once; record its id.

    Returns the MLflow run id; the caller ends the run.
    """
    import mlflow

    experiment_id = setup(cfg, root)
    run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=run_name)
    if first:
        mlflow.log_params(params)
        mlflow.set_tags(tags)
    save_run_record(out_dir, run.info.run_id, experiment_id, mlflow.get_tracking_uri())
    return run.info.run_id
