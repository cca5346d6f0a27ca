"""Which models the service serves, loaded without BentoML so it can be tested on its own.

Sources, first match wins:

* ``SRSTYLE_SERVE_DIR``: a folder of srstyle ``.onnx`` exports (a built Bento, tests). What each file is
  comes from its own metadata: SR (``scale``), fast style (``method: johnson``, ``style``), meta network
  (``method: meta`` with a ``weights`` output; its transformer is ``<stem>.transformer.onnx`` or
  ``transformer.onnx`` beside it). ``<x>.int8.onnx`` is the int8 variant of ``<x>.onnx``, used when
  ``engine.precision`` is int8. ``catalog.json`` (written by ``srstyle export-champions``) adds versions.
* the MLflow registry: the ``champion`` of every ``sr-x<scale>`` and ``style-*`` registered model
  (``MLFLOW_TRACKING_URI``, else the project's store from params.yaml ``tracking:``), and the ``perceptual``
  choice of an ``sr-x<scale>`` where one is set, served as ``sr-x<scale>@perceptual`` (a folder holds it as
  ``sr-x<scale>@perceptual.onnx``); ``sr-x<scale>`` stays the default of its scale.

Nothing found is not an error: the service starts and reports not-ready. A file that does not load is
reported (``/models`` ``errors``) and skipped; it never takes the service down.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..predict import MetaStylePredictor, ModelLoadError, SRPredictor, StylePredictor

log = logging.getLogger(__name__)
INT8_SUFFIX = ".int8.onnx"


@dataclass
class ServedModel:
    name: str           # the name clients use: "sr-x3"/"espcn_x3" for SR, the style name for styles, "meta"
    kind: str           # "sr", "style" or "meta"
    predictor: object   # SRPredictor | StylePredictor | MetaStylePredictor
    source: str
    version: str | None = None
    precision: str = "fp32"
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def scale(self) -> int | None:
        return getattr(self.predictor, "scale", None) if self.kind == "sr" else None

    def describe(self) -> dict:
        d = {"name": self.name, "kind": self.kind, "source": self.source, "version": self.version,
             "precision": self.precision, "metrics": self.metrics}
        if self.kind == "sr":
            p = self.predictor
            d.update(scale=p.scale, color=p.color, receptive_radius=p.receptive_radius)
        decision = getattr(getattr(self.predictor, "engine", None), "decision", None)
        if decision:  # engine auto: what ran, what was measured, why the others were not chosen
            d["engine"] = decision
        return d


@dataclass
class Catalog:
    models: dict[str, ServedModel] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return bool(self.models)

    def of_kind(self, kind: str) -> dict[str, ServedModel]:
        return {k: m for k, m in self.models.items() if m.kind == kind}

    def default_sr(self, scale: int) -> ServedModel | None:
        matches = [m for m in self.of_kind("sr").values() if m.scale == scale]
        return next((m for m in matches if m.name == f"sr-x{scale}"),
                    next((m for m in matches if m.name.startswith("sr-x")), matches[0] if matches else None))

    def describe(self) -> dict:
        return {"ready": self.ready, "models": {k: m.describe() for k, m in self.models.items()},
                "styles": sorted(self.of_kind("style")), "arbitrary_style": bool(self.of_kind("meta")),
                "scales": sorted({m.scale for m in self.of_kind("sr").values()}), "errors": self.errors}


def _metadata(path: Path) -> tuple[dict[str, str], list[str]]:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a corrupt file
        raise ModelLoadError(f"{path.name}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    return {p.key: p.value for p in proto.metadata_props}, [o.name for o in proto.graph.output]


def _transformer_for(path: Path) -> Path:
    for candidate in (path.with_name(path.name.removesuffix(".onnx") + ".transformer.onnx"),
                      path.with_name("transformer.onnx")):
        if candidate.is_file():
            return candidate
    raise ModelLoadError(f"{path.name}: meta network without its transformer graph "
                         f"({path.stem}.transformer.onnx or transformer.onnx beside it)")


def load_file(path: Path, engine, name: str | None = None, precision: str = "fp32",
              int8_path: Path | None = None, transformer: Path | None = None) -> ServedModel | None:
    """One ONNX export as a served model; None for a file that is only part of another (a transformer)."""
    meta, outputs = _metadata(path)
    chosen, used = path, "fp32"
    if precision == "int8":
        candidate = int8_path or path.with_name(path.name.removesuffix(".onnx") + INT8_SUFFIX)
        if candidate.is_file():
            chosen, used = candidate, "int8"
    if "scale" in meta:
        p = SRPredictor.from_onnx(chosen, engine)
        return ServedModel(name or path.stem, "sr", p, str(path), precision=getattr(p.engine, "precision", used))
    method = meta.get("method")
    if method == "johnson":
        style = meta.get("style") or (name or path.stem).removeprefix("style-").removeprefix("fast_")
        p = StylePredictor.from_onnx(chosen, engine)
        return ServedModel(style, "style", p, str(path), precision=getattr(p.engine, "precision", used))
    if method == "meta":
        if "weights" not in outputs:
            return None  # the transformer half of a meta network: loaded with its metanet
        p = MetaStylePredictor.from_onnx(path, transformer or _transformer_for(path), engine)
        return ServedModel("meta", "meta", p, str(path))
    raise ModelLoadError(f"{path.name}: not an srstyle export (no 'scale' or 'method' in its metadata); "
                         "export it with `srstyle export` / the export stages")


def _from_dir(folder: Path, engine, precision: str) -> Catalog:
    catalog = Catalog()
    extra = {}
    if (folder / "catalog.json").is_file():
        extra = json.loads((folder / "catalog.json").read_text())
    for path in sorted(folder.glob("*.onnx")):
        if path.name.endswith(INT8_SUFFIX) or path.name.endswith(".transformer.onnx"):
            continue  # variants and halves, loaded with their main file
        try:
            served = load_file(path, engine, precision=precision)
        except (ModelLoadError, ValueError, OSError) as exc:
            catalog.errors.append(f"{path.name}: {exc}")
            continue
        if served is None:
            continue
        info = extra.get(path.stem, {})
        served.version, served.metrics = info.get("version"), info.get("metrics", {})
        if served.name in catalog.models:
            catalog.errors.append(f"{path.name}: a second model named {served.name!r}; kept {catalog.models[served.name].source}")
            continue
        catalog.models[served.name] = served
    return catalog


def _from_registry(engine, precision: str) -> Catalog:
    import mlflow

    from ..config import ConfigError, TrackingConfig, load_params
    from ..model_registry import CHAMPION, PERCEPTUAL, _alias, champion_files, champion_names, download_champion
    from ..paths import project_root
    from ..tracking import tracking_uri

    catalog = Catalog()
    root = project_root()
    cfg = TrackingConfig()
    params_file = Path(os.environ.get("SRSTYLE_PARAMS", root / "params.yaml"))
    if params_file.is_file():
        try:
            cfg = load_params(params_file).tracking
        except ConfigError:
            pass
    uri = tracking_uri(cfg, root)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        catalog.errors.append(f"no MLflow store at {uri} (run `dvc repro` first, or set MLFLOW_TRACKING_URI)")
        return catalog
    mlflow.set_tracking_uri(uri)
    try:
        names = champion_names()
    except Exception as exc:  # noqa: BLE001
        catalog.errors.append(f"MLflow registry unavailable: {exc}")
        return catalog
    jobs = [(n, CHAMPION) for n in names] + [(n, PERCEPTUAL) for n in names
                                             if n.startswith("sr-x") and _alias(n, PERCEPTUAL) is not None]
    for name, alias in jobs:
        served_name = name if alias == CHAMPION else f"{name}@{alias}"
        # onnxruntime reads the file at session creation: the download is deleted right after loading.
        with tempfile.TemporaryDirectory(prefix="srstyle-serve-") as tmp:
            try:
                folder, mv = download_champion(name, Path(tmp), alias)
                files = champion_files(folder)
                main = files["main"]
                int8 = next((p for n, p in files.items() if n.endswith(INT8_SUFFIX)), None)
                served = load_file(main, engine, name=name, precision=precision, int8_path=int8,
                                   transformer=next((p for n, p in files.items() if n.endswith("transformer.onnx")), None))
            except Exception as exc:  # noqa: BLE001 - one bad version must not take the service down
                catalog.errors.append(f"{name}@{alias}: {exc}")
                continue
        if served is None:
            catalog.errors.append(f"{name}@{alias}: a transformer graph without its meta network")
            continue
        served.source = f"models:/{name}@{alias}"
        served.version = str(mv.version)
        served.metrics = {k.removeprefix("metric."): float(v) for k, v in mv.tags.items() if k.startswith("metric.")}
        if served.kind == "sr":
            served.name = served_name
        catalog.models[served.name] = served
    return catalog


def load_catalog(engine=None, precision: str | None = None) -> Catalog:
    """Every model runs on the shared onnxruntime engine with ``engine`` settings (EngineConfig)."""
    from ..config import EngineConfig

    engine = engine or EngineConfig()
    precision = precision or getattr(engine, "precision", "fp32")
    folder = os.environ.get("SRSTYLE_SERVE_DIR")
    catalog = _from_dir(Path(folder), engine, precision) if folder else _from_registry(engine, precision)
    for err in catalog.errors:
        log.warning("not served: %s", err)
    log.info("serving %s", sorted(catalog.models) or "nothing (not ready)")
    return catalog
