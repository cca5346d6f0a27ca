"""MLflow model registry: every model users serve, with ``champion``/``challenger`` aliases.

Registered models (one per thing a user asks the service for):

* ``sr-x<scale>``: SR models, compared on validation PSNR (higher is better, margin ``promote.margin_db``);
* ``style-<name>``: one per fast (Johnson) style, compared on ``fast_<name>_style_loss_over_gatys`` of
  ``evaluate_style`` (the net's Gram style loss over a Gatys optimisation's on the same held-out photos: lower
  is better, 1 = as good as optimisation; a ratio, so versions evaluated on other photo sizes stay comparable);
* ``style-meta``: the meta network, compared on ``meta_held_out_style_loss_over_gatys`` (the same on paintings
  it never saw). Margin ``promote.style_margin``.

A version is an MLflow ``onnx`` model logged by promotion into the training run (the file DVC tracks, so
the registry never points at an artifact a run-cache restore left out), with a signature from the graph's
own input/output shapes and an input example. Extra files of the same version: ``<stem>.int8.onnx`` (the
int8 variant, selectable by ``engine.precision``), ``<stem>.precision.json`` (the export stage's evaluation
of every variant, which ``engine.precision: auto`` needs before it picks anything but fp32) and, for the meta
network, ``transformer.onnx``. No
pickled PyTorch anywhere: the loaders read ONNX only.

``challenger`` marks the latest candidate; ``champion`` moves only if the challenger wins by the margin
AND the run is one the user means to ship (:func:`ship_decision`): a ``dvc exp run`` never moves it.

``perceptual`` (SR only) is a second choice on the same ``sr-x<scale>``, kept apart from the PSNR champion: the
alias moves by ``promote.perceptual_metric`` (``vgg_distance`` or ``niqe``, lower is better, margin
``promote.perceptual_margin``) among versions whose PSNR gain over bicubic is at least
``promote.perceptual_min_gain_db``; its decisions go to ``data/registry/perceptual_decisions.json`` and to
``perceptual_decision.*`` version tags. The service serves it as ``sr-x<scale>@perceptual``.
Re-registering the same file is a no-op (the version is found by the file's sha256 and the run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, PERCEPTUAL = "champion", "challenger", "perceptual"
SOURCE_RUN_TAG = "srstyle.source_run_id"
SHA_TAG = "srstyle.onnx_sha256"
MODEL_NAME = "serving_model"  # the logged model (in the training run) that versions are created from
SHIP_ENV = "SRSTYLE_SHIP"    # "1": this run ships (champion may move); "0": challengers only
INT8_SUFFIX = ".int8.onnx"
PRECISION_SUFFIX = ".precision.json"   # the export stage's evaluation of each variant (srstyle.export.precision)


class RegistryError(RuntimeError):
    """A registry operation that cannot go on; the message names the run, the stage and what to do."""


@dataclass(frozen=True)
class Decision:
    registered_model: str
    version: str
    metric: str
    challenger_score: float
    champion_version: str | None
    champion_score: float | None
    margin: float
    outcome: str  # "first champion", "promoted", "kept champion", "already champion", "challenger only (...)"

    def message(self) -> str:
        if self.champion_version is None:
            return f"{self.registered_model} v{self.version}: {self.outcome} ({self.metric}={self.challenger_score:.4f})"
        champ = "no metric" if self.champion_score is None else f"{self.champion_score:.4f}"
        return (f"{self.registered_model} v{self.version}: {self.outcome}: challenger {self.metric}="
                f"{self.challenger_score:.4f} vs champion v{self.champion_version} {champ} (margin {self.margin})")


def registered_model_name(task: str, scale: int | None = None) -> str:
    return f"{task}-x{scale}" if scale else task


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


# --- shipping: who may move `champion` ----------------------------------------------------------------------

def in_dvc_experiment(env: dict | None = None, cwd: Path | None = None) -> bool:
    """True inside `dvc exp run` (workspace, --temp or --queue): DVC sets DVC_EXP_* for the stage commands,
    and temp/queued experiments run in a copy under .dvc/tmp/exps."""
    env = os.environ if env is None else env
    if env.get("DVC_EXP_NAME") or env.get("DVC_EXP_BASELINE_REV"):
        return True
    parts = Path(cwd or os.getcwd()).resolve().parts
    return any(parts[i : i + 3] == (".dvc", "tmp", "exps") for i in range(len(parts) - 2))


def ship_decision(explicit: bool | None = None) -> tuple[bool, str]:
    """(may champion move, why). An experiment never ships; ``srstyle promote --ship`` (explicit) and
    ``SRSTYLE_SHIP=1`` do; ``SRSTYLE_SHIP=0`` makes any run challenger-only; a plain `dvc repro` ships."""
    if in_dvc_experiment():
        return False, "a `dvc exp run` experiment registers challengers only; ship it with `dvc exp apply` + `srstyle promote --ship`"
    if explicit is not None:
        return explicit, "explicit --ship" if explicit else "explicit --no-ship"
    value = os.environ.get(SHIP_ENV, "").strip()
    if value in ("0", "false", "no"):
        return False, f"{SHIP_ENV}={value}"
    return True, f"{SHIP_ENV}={value}" if value else "`dvc repro` in the workspace"


# --- versions -----------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _onnx_io(path: Path):
    """Signature from the graph itself: dynamic dims -> -1; and an input example of small, valid size."""
    import numpy as np
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def spec(value) -> tuple[str, tuple[int, ...]]:
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)
        return value.name, dims

    inputs = [spec(v) for v in graph.input if v.name not in initializers]
    outputs = [spec(v) for v in graph.output]
    signature = ModelSignature(Schema([TensorSpec(np.dtype(np.float32), s, n) for n, s in inputs]),
                               Schema([TensorSpec(np.dtype(np.float32), s, n) for n, s in outputs]))
    example = None
    if len(inputs) == 1:  # a multi-input graph (the meta transformer) is the extra file, never the main one
        name, dims = inputs[0]
        shape = tuple(d if d > 0 else (1 if i == 0 else 32) for i, d in enumerate(dims))
        example = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    return signature, example


def _run_exists(run_id: str) -> bool:
    try:
        _client().get_run(run_id)
        return True
    except Exception:  # noqa: BLE001 - MlflowException/RestException when missing
        return False


def _logged_models(run_id: str, name: str) -> list:
    import mlflow

    run = _client().get_run(run_id)
    return mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                       filter_string=f"source_run_id = '{run_id}' AND name = '{name}'")


def check_run_holds(run_id: str, stage: str, artifact: str = "onnx_model", record: str = "") -> None:
    """Fail with a clear message unless MLflow run ``run_id`` exists and holds the logged model ``artifact``
    (what stage ``stage`` logs): a DVC run-cache restore skips the stage, so the new run never gets it."""
    where = f" (recorded in {record})" if record else ""
    if not _run_exists(run_id):
        raise RegistryError(f"MLflow run {run_id}{where} is not in the tracking store {_tracking_uri()}: rerun "
                            f"`dvc repro -f {stage}` against this store, or point MLFLOW_TRACKING_URI at the store it used")
    if not _logged_models(run_id, artifact):
        raise RegistryError(f"MLflow run {run_id}{where} holds no logged model '{artifact}': stage {stage} did not "
                            f"log into it (restored from DVC's run cache?); rerun `dvc repro -f {stage}`")


def _tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def register_onnx(name: str, run_id: str, onnx_file: Path, metrics: dict[str, float], tags: dict[str, str],
                  extra_files: list[Path] = (), stage: str = "") -> object:
    """The registry version of ``onnx_file`` (trained in ``run_id``), created once: the file is logged into
    the run as an MLflow onnx model with signature + input example (+ extra files), then registered."""
    import mlflow
    import onnx

    onnx_file = Path(onnx_file)
    if not onnx_file.is_file():
        raise RegistryError(f"{onnx_file}: ONNX file missing; run `dvc repro {stage or 'export_onnx'}` first")
    if not _run_exists(run_id):
        raise RegistryError(f"MLflow run {run_id} (model {name}, stage {stage or '?'}) is not in the tracking store "
                            f"{_tracking_uri()}: rerun `dvc repro -f {stage}` or set MLFLOW_TRACKING_URI to the store it used")
    sha = _sha256(onnx_file)
    client = _client()
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name, description="srstyle: champion/challenger by held-out metric")
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get(SOURCE_RUN_TAG) == run_id and mv.tags.get(SHA_TAG) == sha:
            return mv
    try:
        proto = onnx.load(str(onnx_file))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise RegistryError(f"{onnx_file}: not a readable ONNX file ({exc}); rerun `dvc repro -f {stage}`") from None
    signature, example = _onnx_io(onnx_file)
    # the training run may sit in another experiment than the one set for this process: log into it there
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.onnx.log_model(proto, name=MODEL_NAME, signature=signature, input_example=example,
                                     extra_files=[str(p) for p in extra_files if Path(p).is_file()] or None,
                                     pip_requirements=["onnxruntime", "numpy"], metadata={"onnx_sha256": sha},
                                     save_as_external_data=False)  # one self-contained file, copied as is
    version_tags = {SOURCE_RUN_TAG: run_id, SHA_TAG: sha, **tags, **{f"metric.{k}": str(v) for k, v in metrics.items()}}
    return mlflow.register_model(info.model_uri, name, tags=version_tags)


# --- promotion ----------------------------------------------------------------------------------------------

def _version_score(mv, metric: str) -> float | None:
    value = mv.tags.get(f"metric.{metric}") if mv is not None else None
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _alias(name: str, alias: str):
    try:
        return _client().get_model_version_by_alias(name, alias)
    except Exception:  # noqa: BLE001 - MLflow raises RestException/MlflowException when the alias is unset
        return None


def _decide(candidate, champion, metric: str, score: float, margin: float, higher_is_better: bool):
    if champion is None:
        return "first champion", None, None
    champ_score = _version_score(champion, metric)
    if champion.version == candidate.version:
        return "already champion", champion.version, champ_score
    if champ_score is None:  # a champion with no metric cannot defend its place (checked before comparing)
        return "promoted", champion.version, None
    better = score > champ_score + margin if higher_is_better else score < champ_score - margin
    return ("promoted" if better else "kept champion"), champion.version, champ_score


def promote(name: str, version: str, metric: str, margin: float, higher_is_better: bool = True,
            ship: bool = True, why: str = "", alias: str = CHAMPION) -> Decision:
    """Set ``challenger`` to ``version``; move ``alias`` (``champion``, or ``perceptual`` for the perceptual
    choice) to it only if it wins by ``margin`` and ``ship``.

    The champion is read again just before the alias moves: if another promotion moved it meanwhile, the
    decision is taken again against the new champion (never overwrite a champion we did not compare with).
    """
    client = _client()
    candidate = client.get_model_version(name, version)
    score = _version_score(candidate, metric)
    if score is None:
        raise RegistryError(f"{name} v{version} has no metric.{metric} tag; register it with its evaluation metrics")
    client.set_registered_model_alias(name, CHALLENGER, candidate.version)
    for _ in range(5):
        champion = _alias(name, alias)
        outcome, champ_version, champ_score = _decide(candidate, champion, metric, score, margin, higher_is_better)
        if outcome in ("first champion", "promoted") and not ship:
            outcome = f"challenger only ({why or 'not shipped'}); would be {outcome}"
        if outcome not in ("first champion", "promoted"):
            break
        now = _alias(name, alias)
        if (now.version if now else None) != champ_version:
            log.warning("%s: %s moved to v%s while deciding; deciding again", name, alias, now.version if now else None)
            continue
        client.set_registered_model_alias(name, alias, candidate.version)
        break
    else:
        raise RegistryError(f"{name}: {alias} kept moving while promoting v{version}; another promotion is running, retry")
    decision = Decision(name, candidate.version, metric, score, champ_version, champ_score, margin, outcome)
    if outcome != "already champion":
        prefix = "decision" if alias == CHAMPION else f"{alias}_decision"
        for key, value in asdict(decision).items():
            client.set_model_version_tag(name, candidate.version, f"{prefix}.{key}", "" if value is None else str(value))
    log.info(decision.message())
    return decision


def _decision_record(d: Decision, metric_key: str) -> dict:
    return {"registered_model": d.registered_model, "version": d.version, "outcome": d.outcome,
            metric_key: d.challenger_score, "champion_version": d.champion_version,
            f"champion_{metric_key}": d.champion_score, "margin": d.margin}


def _run_record(model_dir: Path) -> dict:
    from .io import read_json

    path = model_dir / "mlflow_run.json"
    if not path.is_file():
        raise RegistryError(f"{path}: missing (no MLflow run recorded for this model); rerun its training stage")
    return read_json(path)


def _onnx_run_id(onnx_file: Path) -> str | None:
    import onnx

    try:
        meta = {p.key: p.value for p in onnx.load(str(onnx_file), load_external_data=False).metadata_props}
    except Exception:  # noqa: BLE001
        return None
    return meta.get("mlflow_run_id")


def _precision_file(onnx_file: Path) -> Path:
    """The export stage's precision evaluation of ``onnx_file``; registered with it (as an extra file) so a
    champion served from the registry or a Bento keeps the gates of ``engine.precision: auto``."""
    from .engine_auto import record_path

    return record_path(onnx_file)


def promote_runs(params, paths, root, ship: bool | None = None) -> dict:
    """Register and promote every SR run of params.yaml (the `promote` stage and `srstyle promote`)."""
    from .io import read_json, write_json
    from .tracking import setup

    setup(params.tracking, root)
    allowed, why = ship_decision(ship)
    decisions, perceptual = {}, {}
    for run, spec in params.runs.items():
        stage = f"export_onnx@{run}"
        onnx_file = paths.onnx_dir(run) / f"{run}.onnx"
        if not onnx_file.is_file():
            raise RegistryError(f"{onnx_file}: missing; run `dvc repro {stage}` first")
        # The run the ONNX file was exported from (its own metadata), so a run-cache restore of the export
        # (a newer training run id in mlflow_run.json) still registers into the run that holds the file.
        record = str(paths.model_dir(run) / "mlflow_run.json")
        run_id = _onnx_run_id(onnx_file) or _run_record(paths.model_dir(run))["run_id"]
        check_run_holds(run_id, stage, "onnx_model", record=f"{onnx_file} / {record}")
        metrics = read_json(paths.eval_dir(run) / "metrics.json")
        name = registered_model_name("sr", spec.scale)
        int8 = onnx_file.with_name(onnx_file.stem + INT8_SUFFIX)
        mv = register_onnx(name, run_id, onnx_file, {k: v for k, v in metrics.items() if isinstance(v, float)},
                           {"srstyle.run": run, "srstyle.arch": spec.model, "scale": str(spec.scale)},
                           extra_files=[int8, _precision_file(onnx_file)], stage=stage)
        decision = promote(name, mv.version, "psnr", params.promote.margin_db, ship=allowed, why=why)
        print(decision.message())
        rec = _decision_record(decision, "psnr")
        rec["margin_db"] = rec.pop("margin")
        decisions[run] = rec
        if params.promote.perceptual_metric in metrics:
            perceptual[run] = promote_perceptual(name, mv, metrics, params.promote, allowed, why)
        else:
            log.warning("%s: no %s in %s (evaluate.perceptual off?): sr-x%s@%s not considered", run,
                        params.promote.perceptual_metric, paths.eval_dir(run) / "metrics.json", spec.scale, PERCEPTUAL)
    write_json(decisions, paths.data / "registry" / "decisions.json")
    write_json(perceptual, paths.data / "registry" / "perceptual_decisions.json")
    return decisions


def promote_perceptual(name: str, mv, metrics: dict, cfg, ship: bool, why: str) -> dict:
    """Move ``name@perceptual`` by ``cfg.perceptual_metric`` (lower is better) among versions that keep a PSNR
    gain over bicubic of at least ``cfg.perceptual_min_gain_db``; returns the decision record."""
    metric, client = cfg.perceptual_metric, _client()
    # a version registered before the perceptual metrics existed gets them now (same run, same file)
    for key in (metric, "psnr_gain"):
        if key in metrics and _version_score(mv, key) is None:
            client.set_model_version_tag(name, mv.version, f"metric.{key}", str(metrics[key]))
    gain = float(metrics.get("psnr_gain", float("nan")))
    if not gain >= cfg.perceptual_min_gain_db:
        current = _alias(name, PERCEPTUAL)
        rec = {"registered_model": name, "version": str(mv.version), "metric": metric, "score": float(metrics[metric]),
               "outcome": f"not eligible (psnr_gain {gain:+.4f} dB < {cfg.perceptual_min_gain_db} dB)",
               "champion_version": current.version if current else None, "champion_score": _version_score(current, metric)}
        print(f"{name} v{mv.version}: {rec['outcome']} for @{PERCEPTUAL}")
        return rec
    d = promote(name, mv.version, metric, cfg.perceptual_margin, higher_is_better=False, ship=ship, why=why,
                alias=PERCEPTUAL)
    print(f"@{PERCEPTUAL}: {d.message()}")
    return _decision_record(d, "score") | {"metric": metric}


def style_metric(kind: str, style: str | None = None) -> str:
    """The evaluate_style metric a style model is compared on (lower is better)."""
    return f"fast_{style}_style_loss_over_gatys" if kind == "fast" else "meta_held_out_style_loss_over_gatys"


def promote_style(params, style_paths, root, ship: bool | None = None) -> dict:
    """Register and promote every fast style net (``style-<name>``) and the meta network (``style-meta``)."""
    from .io import read_json, write_json
    from .tracking import setup

    setup(params.tracking, root)
    allowed, why = ship_decision(ship)
    metrics_file = style_paths.eval_dir / "metrics.json"
    if not metrics_file.is_file():
        raise RegistryError(f"{metrics_file}: missing; run `dvc repro evaluate_style` first")
    metrics = read_json(metrics_file)
    margin = params.promote.style_margin
    jobs = [(f"style-{s}", style_paths.fast_model_dir(s), style_paths.onnx_dir / f"fast_{s}.onnx", [],
             style_metric("fast", s), f"train_style@{s}") for s in params.style.fast.styles]
    meta_dir = style_paths.meta_model_dir
    if (meta_dir / "mlflow_run.json").is_file():
        jobs.append(("style-meta", meta_dir, style_paths.onnx_dir / "metanet.onnx",
                     [style_paths.onnx_dir / "transformer.onnx"], style_metric("meta"), "train_meta"))
    decisions = {}
    for name, model_dir, onnx_file, extra, metric, train_stage in jobs:
        if metric not in metrics:
            raise RegistryError(f"{metrics_file} has no {metric}; rerun `dvc repro evaluate_style`")
        for f in [onnx_file, *extra]:
            if not f.is_file():
                raise RegistryError(f"{f}: missing; run `dvc repro export_style_onnx` first")
        run_id = _run_record(model_dir)["run_id"]
        int8 = onnx_file.with_name(onnx_file.stem + INT8_SUFFIX)
        mv = register_onnx(name, run_id, onnx_file, {metric: float(metrics[metric])},
                           {"srstyle.run": name, "task": "style-transfer"},
                           extra_files=[*extra, int8, *map(_precision_file, [onnx_file, *extra])],
                           stage=f"{train_stage} / export_style_onnx")
        decision = promote(name, mv.version, metric, margin, higher_is_better=False, ship=allowed, why=why)
        print(decision.message())
        decisions[name] = _decision_record(decision, "score") | {"metric": metric}
    write_json(decisions, style_paths.base / "registry" / "decisions.json")
    return decisions


# --- what the service and `make package` read ---------------------------------------------------------------

SERVED_PREFIXES = ("sr-x", "style-")


def champion_names() -> list[str]:
    return sorted(rm.name for rm in _client().search_registered_models() if rm.name.startswith(SERVED_PREFIXES))


def download_champion(name: str, dst: Path, alias: str = CHAMPION) -> tuple[Path, object]:
    """Download ``name@<alias>`` (the champion unless told) into ``dst``; returns (folder holding model.onnx and
    extra files, version)."""
    import mlflow

    mv = _client().get_model_version_by_alias(name, alias)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}@{alias}", dst_path=str(dst)))
    return local, mv


def champion_files(folder: Path) -> dict[str, Path]:
    """The files of one downloaded version: ``main`` (model.onnx), its extra ONNX files by file name, and
    ``precision`` (the export stage's ``<run>.precision.json``) where the version carries one.

    The int8 variant and the precision record are also placed beside model.onnx as ``model.int8.onnx`` and
    ``model.precision.json``: that is where the engine looks for them (:func:`srstyle.engine.variant_path`,
    :func:`srstyle.engine_auto.record_path`), so ``engine.precision: auto`` weighs every variant of a
    registered model as it does for the stage's own files, and never picks one the evaluation marked unusable."""
    import shutil

    main = folder / "model.onnx"
    files = {"main": main}
    extra = folder / "extra_files"
    if extra.is_dir():
        files.update({p.name: p for p in extra.glob("*.onnx")})
        # an extra graph's own record (the meta network's transformer.precision.json) already lies beside it
        own = {p.name.removesuffix(".onnx") for p in extra.glob("*.onnx") if not p.name.endswith(INT8_SUFFIX)}
        records = [p for p in sorted(extra.glob(f"*{PRECISION_SUFFIX}")) if p.name.removesuffix(PRECISION_SUFFIX) not in own]
        if records:
            files["precision"] = records[0]
            shutil.copyfile(records[0], main.with_name(main.stem + PRECISION_SUFFIX))
        int8 = next((p for name, p in files.items() if name.endswith(INT8_SUFFIX)), None)
        if int8 is not None and main.is_file():
            shutil.copyfile(int8, main.with_name(main.stem + INT8_SUFFIX))
    return files


def _check_readable(path: Path, what: str) -> None:
    import onnx

    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise RegistryError(f"{what}: {path.name} is not a readable ONNX file ({type(exc).__name__}); re-register "
                            "a good version and promote it, or remove the alias, before packaging") from None


def export_champions(out_dir, tracking_cfg, root) -> list[str]:
    """Copy the ONNX files of every served champion into ``out_dir`` (what `make package` bundles):
    ``sr-x3.onnx`` (+ ``sr-x3.int8.onnx``), ``style-<name>.onnx``, ``style-meta.onnx`` + ``style-meta.transformer.onnx``,
    and ``catalog.json`` naming each file's registered model, version and metrics."""
    import shutil

    from .io import atomic_write
    from .tracking import setup

    setup(tracking_cfg, root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in [*out_dir.glob("*.onnx"), *out_dir.glob(f"*{PRECISION_SUFFIX}")]:
        old.unlink()
    written, catalog = [], {}
    # SR models also ship their perceptual choice, as <name>@perceptual.onnx (served under that name)
    jobs = [(name, alias) for name in champion_names()
            for alias in ((CHAMPION, PERCEPTUAL) if name.startswith("sr-x") else (CHAMPION,))]
    for name, alias in jobs:
        stem = name if alias == CHAMPION else f"{name}@{alias}"
        with tempfile.TemporaryDirectory(prefix="srstyle-export-") as tmp:
            try:
                local, mv = download_champion(name, Path(tmp), alias)
            except Exception as exc:  # noqa: BLE001
                (log.warning if alias == CHAMPION else log.info)("%s has no %s to package: %s", name, alias, exc)
                continue
            files = champion_files(local)
            record = files.pop("precision", None)
            for path in files.values():
                _check_readable(path, f"{name}@{alias} (v{mv.version})")
            shutil.copyfile(files.pop("main"), out_dir / f"{stem}.onnx")
            written.append(str(out_dir / f"{stem}.onnx"))
            if record is not None:  # beside <stem>.onnx, where engine_auto.record_path looks
                shutil.copyfile(record, out_dir / f"{stem}{PRECISION_SUFFIX}")
                written.append(str(out_dir / f"{stem}{PRECISION_SUFFIX}"))
            for fname, path in files.items():
                suffix = (INT8_SUFFIX if fname.endswith(INT8_SUFFIX) else
                          ".transformer.onnx" if fname.endswith("transformer.onnx") else f".{Path(fname).stem}.onnx")
                shutil.copyfile(path, out_dir / f"{stem}{suffix}")
                written.append(str(out_dir / f"{stem}{suffix}"))
                own_record = path.with_name(path.stem + PRECISION_SUFFIX)
                if suffix != INT8_SUFFIX and own_record.is_file():
                    shutil.copyfile(own_record, out_dir / f"{stem}{suffix.removesuffix('.onnx')}{PRECISION_SUFFIX}")
                    written.append(str(out_dir / f"{stem}{suffix.removesuffix('.onnx')}{PRECISION_SUFFIX}"))
            catalog[stem] = {"version": str(mv.version), "metrics": {k[7:]: v for k, v in mv.tags.items() if k.startswith("metric.")}}
    with atomic_write(out_dir / "catalog.json") as f:
        json.dump(catalog, f, indent=2)
    return written
