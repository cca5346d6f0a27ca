"""MLflow model registry: register every trained model version, move the ``champion`` alias only when a
challenger beats it on the held-out metric by a margin, and log every decision.

One registered model per task and scale (``sr-x3``, ``sr-x4``...). A version is created from the run's ONNX
model (``runs:/<run>/onnx_model``, logged by the export stage) and tagged with its evaluation metrics.
``challenger`` always marks the latest candidate; ``champion`` moves only if
``challenger_score > champion_score + margin``. Registering the same training run again reuses its version
and re-evaluates nothing that changed, so rerunning promotion is a no-op. Aliases, not the deprecated stages.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
SOURCE_RUN_TAG = "srstyle.source_run_id"


@dataclass(frozen=True)
class Decision:
    registered_model: str
    version: str
    metric: str
    challenger_score: float
    champion_version: str | None
    champion_score: float | None
    margin: float
    outcome: str  # "first champion", "promoted", "kept champion", "already champion"

    def message(self) -> str:
        if self.champion_version is None:
            return f"{self.registered_model} v{self.version}: {self.outcome} ({self.metric}={self.challenger_score:.4f})"
        return (f"{self.registered_model} v{self.version}: {self.outcome}: challenger {self.metric}="
                f"{self.challenger_score:.4f} vs champion v{self.champion_version} {self.champion_score:.4f} "
                f"(margin {self.margin})")


def registered_model_name(task: str, scale: int | None = None) -> str:
    return f"{task}-x{scale}" if scale else task


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def register_version(name: str, run_id: str, artifact: str, metrics: dict[str, float], tags: dict[str, str]):
    """The registry version of ``run_id``'s model, created once (idempotent)."""
    import mlflow

    client = _client()
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name, description="srstyle: champion/challenger by held-out metric")
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get(SOURCE_RUN_TAG) == run_id:
            return mv
    version_tags = {SOURCE_RUN_TAG: run_id, **tags, **{f"metric.{k}": str(v) for k, v in metrics.items()}}
    return mlflow.register_model(f"runs:/{run_id}/{artifact}", name, tags=version_tags)


def _version_score(mv, metric: str) -> float | None:
    value = mv.tags.get(f"metric.{metric}")
    return float(value) if value is not None else None


def promote(name: str, version: str, metric: str, margin: float, higher_is_better: bool = True) -> Decision:
    """Set ``challenger`` to ``version``; move ``champion`` to it only if it wins by ``margin``."""
    client = _client()
    candidate = client.get_model_version(name, version)
    score = _version_score(candidate, metric)
    if score is None:
        raise ValueError(f"{name} v{version} has no metric.{metric} tag; register it with its evaluation metrics")
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # noqa: BLE001 - MLflow raises RestException/MlflowException when the alias is unset
        champion = None

    if champion is None:
        outcome, champ_version, champ_score = "first champion", None, None
    elif champion.version == candidate.version:
        outcome, champ_version, champ_score = "already champion", champion.version, _version_score(champion, metric)
    else:
        champ_version, champ_score = champion.version, _version_score(champion, metric)
        better = score > champ_score + margin if higher_is_better else score < champ_score - margin
        outcome = "promoted" if champ_score is None or better else "kept champion"

    client.set_registered_model_alias(name, CHALLENGER, candidate.version)
    if outcome in ("first champion", "promoted"):
        client.set_registered_model_alias(name, CHAMPION, candidate.version)
    decision = Decision(name, candidate.version, metric, score, champ_version, champ_score, margin, outcome)
    if outcome != "already champion":
        for key, value in asdict(decision).items():
            client.set_model_version_tag(name, candidate.version, f"decision.{key}", "" if value is None else str(value))
    log.info(decision.message())
    return decision


def promote_runs(params, paths, root) -> dict:
    """Register and promote every run of params.yaml (the `promote` stage and `srstyle promote`)."""
    from .io import read_json, write_json
    from .tracking import setup

    setup(params.tracking, root)
    decisions = {}
    for run, spec in params.runs.items():
        record = read_json(paths.model_dir(run) / "mlflow_run.json")
        metrics = read_json(paths.eval_dir(run) / "metrics.json")
        name = registered_model_name("sr", spec.scale)
        mv = register_version(name, record["run_id"], "onnx_model",
                              {k: v for k, v in metrics.items() if isinstance(v, float)},
                              {"srstyle.run": run, "srstyle.arch": spec.model, "scale": str(spec.scale)})
        decision = promote(name, mv.version, "psnr", params.promote.margin_db)
        print(decision.message())
        decisions[run] = {"registered_model": name, "version": mv.version, "outcome": decision.outcome,
                          "psnr": decision.challenger_score, "champion_version": decision.champion_version,
                          "champion_psnr": decision.champion_score, "margin_db": decision.margin}
    write_json(decisions, paths.data / "registry" / "decisions.json")
    return decisions


def export_champions(out_dir, tracking_cfg, root) -> list[str]:
    """Copy the ONNX file of every ``sr-x*@champion`` into ``out_dir`` (what `make package` bundles)."""
    import shutil
    import tempfile
    from pathlib import Path

    import mlflow

    from .tracking import setup

    setup(tracking_cfg, root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for rm in _client().search_registered_models():
        if not rm.name.startswith("sr-x"):
            continue
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{rm.name}@{CHAMPION}",
                                                             dst_path=tempfile.mkdtemp(prefix="srstyle-")))
        except Exception as exc:  # noqa: BLE001
            log.warning("%s has no champion to package: %s", rm.name, exc)
            continue
        onnx_file = next(local.rglob("*.onnx"))
        target = out_dir / f"{rm.name}.onnx"
        shutil.copyfile(onnx_file, target)
        written.append(str(target))
    return written
