"""Which models the service serves, loaded without BentoML so it can be tested on its own.

Sources, first match wins:
* ``SRSTYLE_SERVE_DIR``: a folder of ``.onnx`` files exported by srstyle (a built Bento, tests);
* the MLflow registry: the ``champion`` alias of every registered model named ``sr-x<scale>``
  (``MLFLOW_TRACKING_URI``, else the project's SQLite store under ``SRSTYLE_ROOT`` / the working directory).
Nothing found is not an error: the service starts and reports not-ready.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..inference import SRModel, load_sr_model

log = logging.getLogger(__name__)


@dataclass
class ServedModel:
    name: str
    scale: int
    model: SRModel
    source: str
    version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"name": self.name, "scale": self.scale, "color": self.model.color, "source": self.source, "version": self.version,
                "metrics": self.metrics, "receptive_radius": self.model.receptive_radius}


@dataclass
class Catalog:
    models: dict[str, ServedModel] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return bool(self.models)

    def default_for(self, scale: int) -> ServedModel | None:
        for m in self.models.values():
            if m.scale == scale and m.name.startswith("sr-x"):
                return m
        return next((m for m in self.models.values() if m.scale == scale), None)


def _from_dir(folder: Path, threads: int, engine=None) -> Catalog:
    catalog = Catalog()
    # The precision engine.precision asks for comes first, so it is the default for its scale.
    int8_first = getattr(engine, "precision", "fp32") == "int8"
    for path in sorted(folder.glob("*.onnx"), key=lambda p: (p.name.endswith(".int8.onnx") != int8_first, p.name)):
        try:
            model = load_sr_model(path, threads=threads, engine=engine)
        except Exception as exc:  # noqa: BLE001 - one bad file must not take the service down
            catalog.errors.append(f"{path.name}: {exc}")
            continue
        catalog.models[path.stem] = ServedModel(path.stem, model.scale, model, str(path))
    return catalog


def _from_registry(threads: int, engine=None) -> Catalog:
    import mlflow

    from ..config import TrackingConfig
    from ..paths import project_root
    from ..tracking import tracking_uri

    catalog = Catalog()
    uri = tracking_uri(TrackingConfig(), project_root())
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        catalog.errors.append(f"no MLflow store at {uri} (run `dvc repro` first, or set MLFLOW_TRACKING_URI)")
        return catalog
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    try:
        registered = client.search_registered_models()
    except Exception as exc:  # noqa: BLE001
        catalog.errors.append(f"MLflow registry unavailable: {exc}")
        return catalog
    for rm in registered:
        if not rm.name.startswith("sr-x"):
            continue
        try:
            mv = client.get_model_version_by_alias(rm.name, "champion")
            model = load_sr_model(f"models:/{rm.name}@champion", threads=threads, engine=engine)
        except Exception as exc:  # noqa: BLE001
            catalog.errors.append(f"{rm.name}@champion: {exc}")
            continue
        metrics = {k.removeprefix("metric."): float(v) for k, v in mv.tags.items() if k.startswith("metric.")}
        catalog.models[rm.name] = ServedModel(rm.name, model.scale, model, f"models:/{rm.name}@champion", mv.version, metrics)
    return catalog


def load_catalog(threads: int = 0, engine=None) -> Catalog:
    """Every model runs on the shared engine (srstyle.engine) with ``engine`` settings; ``threads`` overrides
    its intra-op threads. A folder may hold both precisions: ``x.onnx`` and ``x.int8.onnx`` serve as two names."""
    folder = os.environ.get("SRSTYLE_SERVE_DIR")
    catalog = _from_dir(Path(folder), threads, engine) if folder else _from_registry(threads, engine)
    for err in catalog.errors:
        log.warning("not served: %s", err)
    log.info("serving %s", sorted(catalog.models) or "nothing (not ready)")
    return catalog
