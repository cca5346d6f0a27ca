"""Loading a model for the CLI, whatever form it is in, as a prediction-core object.

* an ``.onnx`` file: :class:`srstyle.predict.SRPredictor` / :class:`~srstyle.predict.StylePredictor` run by
  onnxruntime (what the service runs too);
* a trainer ``model.pt``: the PyTorch adapter below wraps the module's forward pass into the same
  predictor (torch is imported only then, never by ``import srstyle.inference``);
* an MLflow URI (``runs:/...``, ``models:/<name>@<alias>``) whose artifacts are one of those, looked up in
  the project's store (``tracking:`` in params.yaml) unless ``MLFLOW_TRACKING_URI`` says otherwise.

``SRModel``, ``load_sr_model``, ``upscale_rgb`` and ``model_y_output`` keep their old names for the stages
and tests that use them; they are the core's objects and methods.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .predict.sr import ModelLoadError, SRPredictor
from .predict.style import MetaStylePredictor, StylePredictor

SRModel = SRPredictor  # the old name of the same thing

__all__ = ["ModelLoadError", "SRModel", "load_sr_model", "load_style_model", "model_y_output", "upscale_rgb"]


# -- PyTorch adapters -------------------------------------------------------------------------------------
def _torch_model(module, source: str) -> SRPredictor:
    """A trained torch SR module as a predictor (the module runs on CPU in float32, no gradients)."""
    import torch

    from .models import as_lr_model
    from .tiling import receptive_radius

    module = as_lr_model(module).eval()
    radius = receptive_radius(module, 1 if module.color == "y" else 3)

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return SRPredictor(run, int(module.scale), module.color, source, receptive_radius=radius, input_kind=module.input_kind)


def _load_style_file(path: Path | str):
    """A trainer style ``model.pt`` (a plain dict, ``weights_only``) -> (module, info); no training code."""
    import torch

    from .models.style import STYLE_NETS

    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "kind" not in payload or payload.get("arch") not in STYLE_NETS.names():
        raise ValueError("not an srstyle style model (no kind/arch); SR models go to `srstyle upscale`")
    net = STYLE_NETS.get(payload["arch"])(**payload["kwargs"])
    net.load_state_dict(payload["state_dict"])
    return net.eval(), {k: v for k, v in payload.items() if k != "state_dict"}


def torch_style_model(path: Path | str, backbone_cfg=None, style_size: int = 256):
    """A trainer style ``model.pt`` (fast net or meta network) as a core style predictor."""
    import torch

    net, info = _load_style_file(path)
    if info["kind"] == "fast":
        @torch.no_grad()
        def run(x: np.ndarray) -> np.ndarray:
            return net(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()

        return StylePredictor(run, str(path), info.get("style"))
    from .models.backbones import build_backbone
    from .models.style.metanet import META_TAPS, style_statistics
    from .config import BackboneConfig

    cfg = backbone_cfg or BackboneConfig()
    backbone = build_backbone(cfg.arch, list(META_TAPS), cfg.weights, cfg.allow_random_init, cfg.pooling)
    if info.get("backbone") and not info["backbone"].startswith(backbone.description.split(" served")[0]):
        raise ModelLoadError(f"{path}: trained with backbone {info['backbone']!r}, but style.backbone gives "
                             f"{backbone.description!r}; set style.backbone as in training")

    @torch.no_grad()
    def to_weights(x: np.ndarray) -> np.ndarray:
        return net(style_statistics(backbone(torch.from_numpy(x)))).numpy()

    @torch.no_grad()
    def transform(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return net.transformer(torch.from_numpy(np.ascontiguousarray(x, np.float32)),
                               torch.from_numpy(np.ascontiguousarray(weights, np.float32))).numpy()

    return MetaStylePredictor(to_weights, transform, style_size, str(path))


# -- MLflow ---------------------------------------------------------------------------------------------
def _tracking_uri(params_file: Path | str | None) -> str:
    """The project's store: MLFLOW_TRACKING_URI, else ``tracking:`` of params.yaml (defaults when absent)."""
    from .config import ConfigError, Params, load_params
    from .paths import project_root
    from .tracking import tracking_uri

    params, root = Params(), project_root()
    if params_file is not None and Path(params_file).is_file():
        try:
            params = load_params(params_file)
        except ConfigError as exc:
            raise ModelLoadError(str(exc)) from None
        root = project_root(Path(params_file).resolve().parent)  # SRSTYLE_ROOT still wins
    return tracking_uri(params.tracking, root)


def _registry_uri(store: str) -> str:
    return os.environ.get("MLFLOW_REGISTRY_URI") or store


def _resolve_models_uri(uri: str, store: str) -> str:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` (+ ``/sub/path``) -> the version's
    artifact location in ``store``; other URIs unchanged."""
    import re

    import mlflow

    m = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))(/.*)?", uri)
    if not m:
        return uri
    name, alias, version, sub = m.groups()
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=_registry_uri(store))
    mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    return client.get_model_version_download_uri(name, mv.version).rstrip("/") + (sub or "")


def _from_mlflow(uri: str, engine=None, precision: str | None = None, params_file=None) -> SRPredictor:
    import mlflow

    store = _tracking_uri(params_file)
    if store.startswith("sqlite:///") and not Path(store.removeprefix("sqlite:///")).is_file():
        raise ModelLoadError(f"{uri}: no MLflow store at {store} (run `dvc repro` in the project first, "
                             "or set MLFLOW_TRACKING_URI to your tracking server)")
    with tempfile.TemporaryDirectory(prefix="srstyle-model-") as tmp:
        try:
            # every MLflow call names the store: MLflow's default (a new mlflow.db in the working directory)
            # is never touched, and models:/ URIs are resolved here because MLflow resolves them against
            # its process-wide registry URI, not the one passed to download_artifacts
            source = _resolve_models_uri(uri, store)
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=store,
                                                             registry_uri=_registry_uri(store)))
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad URI
            raise ModelLoadError(f"{uri}: cannot download the MLflow model from {store} ({exc})") from None
        onnx_files = sorted(local.rglob("*.onnx"), key=lambda p: (p.name.endswith(".int8.onnx"), p.name))
        if onnx_files:
            return SRPredictor.from_onnx(onnx_files[0], engine, precision)  # the session holds the graph
        mlmodel = local / "MLmodel"
        if mlmodel.is_file() and "pytorch" in mlmodel.read_text():
            import mlflow.pytorch

            return _torch_model(mlflow.pytorch.load_model(str(local)), uri)
    raise ModelLoadError(f"{uri}: holds neither an ONNX nor a PyTorch MLflow model")


def load_sr_model(spec: str | Path, threads: int = 0, engine=None, precision: str | None = None,
                  params_file: Path | str | None = "params.yaml") -> SRPredictor:
    """Load ``spec``: a ``.onnx`` file, a trainer ``.pt`` file, or an MLflow model URI.

    ONNX models run through :mod:`srstyle.engine` (onnxruntime or OpenVINO) with the ``engine`` settings (an
    :class:`~srstyle.config.EngineConfig`; ``threads`` overrides its intra-op threads); ``precision``
    ("auto"/"fp32"/"bf16"/"int8") overrides ``engine.precision`` (None: the setting; an ``.int8.onnx`` file
    given under ``auto`` runs as int8). A ``.pt`` file runs on PyTorch, the fallback.
    """
    from .config import EngineConfig

    engine = engine or EngineConfig()
    if threads:
        engine = engine.model_copy(update={"intra_op_threads": threads})
    text = str(spec)
    if "://" in text or text.startswith(("runs:/", "models:/")):
        return _from_mlflow(text, engine, precision, params_file)
    path = Path(text)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found (give an .onnx file, a model.pt or an MLflow URI)")
    if path.suffix == ".onnx":
        return SRPredictor.from_onnx(path, engine, precision)
    if path.suffix in (".pt", ".pth"):
        from .models.files import load_model_file

        try:
            return _torch_model(load_model_file(path), str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{path}: not a model file written by srstyle's trainer ({exc})") from None
    raise ModelLoadError(f"{path}: unknown model type {path.suffix!r}; expected .onnx or .pt")


def load_style_model(spec: str | Path, engine=None, backbone_cfg=None, style_size: int = 256):
    """A style model file: ``fast_<style>.onnx``, ``metanet.onnx`` (+ ``transformer.onnx`` beside it), or a
    trainer ``model.pt`` (fast or meta; PyTorch adapter)."""
    path = Path(spec)
    if not path.is_file():
        raise ModelLoadError(f"{path}: style model file not found")
    if path.suffix == ".onnx":
        import onnx

        try:  # the metadata only: the predictor builds the session
            meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a bad file
            raise ModelLoadError(f"{path}: not a readable ONNX file ({exc})") from None
        if meta.get("method") == "meta":
            return MetaStylePredictor.from_onnx(path.with_name("metanet.onnx"), path.with_name("transformer.onnx"), engine)
        return StylePredictor.from_onnx(path, engine)
    if path.suffix in (".pt", ".pth"):
        try:
            return torch_style_model(path, backbone_cfg, style_size)
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a file that is not its own
            raise ModelLoadError(f"{path}: not a style model written by srstyle's trainer ({exc})") from None
    raise ModelLoadError(f"{path}: unknown model type {path.suffix!r}; expected .onnx or .pt")


def upscale_rgb(model: SRPredictor, rgb: np.ndarray) -> np.ndarray:
    """Super-resolve an HxWx3 uint8 RGB image with the model's tile/overlap/ensemble settings."""
    return model.upscale(rgb)


def model_y_output(model: SRPredictor, lr_rgb: np.ndarray) -> np.ndarray:
    """The model's SR luma (0-255, rounded to 8 bits as a saved image would be) for an LR RGB image."""
    return model.luma(lr_rgb)
