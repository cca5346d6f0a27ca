"""One way to run a trained SR model on a whole RGB image, whatever form the model is in.

A model is given as an ``.onnx`` file (run by onnxruntime), a ``model.pt`` file written by the trainer
(run by PyTorch), or an MLflow URI (``runs:/...``, ``models:/...``) whose artifacts are one of those
flavours. Y-channel models see BT.601 luma in [0, 1]; chroma is upscaled with bicubic, as in the papers.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .color import rgb_to_ycbcr, rgb_to_y, to_uint8, ycbcr_to_rgb
from .resize import bicubic_float


class ModelLoadError(ValueError):
    """The model path or URI cannot be loaded; the message says what was expected."""


@dataclass
class SRModel:
    """A callable on float32 (N,C,h,w) arrays in [0, 1] returning (N,C,h*s,w*s), with its conventions.

    ``tile`` > 0 runs large inputs tile by tile with ``overlap`` LR pixels of context (bounded memory, same
    output when the overlap covers ``receptive_radius``); ``ensemble`` averages the x8 flips/rotations.
    """

    run: Callable[[np.ndarray], np.ndarray]
    scale: int
    color: str  # "y" or "rgb"
    input_kind: str  # always "lr": models fed a bicubic upscale carry the Resize inside (LRInput)
    source: str
    receptive_radius: int | None = None
    tile: int = 0
    overlap: int | None = None
    ensemble: bool = False
    engine: object | None = None  # the OrtEngine behind ``run`` (None: the PyTorch fallback)

    def predict(self, x: np.ndarray) -> np.ndarray:
        from .tiling import run_tiled, self_ensemble

        def once(a: np.ndarray) -> np.ndarray:
            if self.tile and max(a.shape[2:]) > self.tile:
                overlap = self.overlap if self.overlap is not None else (self.receptive_radius or 16)
                return run_tiled(self.run, a, self.scale, self.tile, overlap)
            return self.run(a)

        return self_ensemble(once, x) if self.ensemble else once(x)


def _onnx_model(path: Path, threads: int = 0, engine=None, precision: str | None = None) -> SRModel:
    """An exported model run by the engine (:mod:`srstyle.engine`), in the requested precision."""
    from .config import EngineConfig
    from .engine import EngineError, OrtEngine, variant_path

    cfg = engine or EngineConfig()
    if threads:
        cfg = cfg.model_copy(update={"intra_op_threads": threads})
    if precision is not None:
        wanted = variant_path(path, precision)
        if not wanted.is_file():
            hint = " (export it with quantisation: export.int8.enabled)" if precision == "int8" else ""
            raise ModelLoadError(f"{wanted}: no {precision} variant of {path.name}{hint}")
        path = wanted
    try:
        eng = OrtEngine(path, cfg)
    except EngineError as exc:
        raise ModelLoadError(str(exc)) from None
    if eng.meta.get("input_kind", "lr") != "lr":
        raise ModelLoadError(f"{path}: expects input {eng.meta['input_kind']!r}; re-export it with srstyle (LR input)")
    model = SRModel(eng.run, eng.scale, eng.color, "lr", str(path), receptive_radius=eng.receptive_radius)
    model.engine = eng
    return model


def _torch_model(module: torch.nn.Module, source: str) -> SRModel:
    from .models import as_lr_model
    from .tiling import receptive_radius

    module = as_lr_model(module).eval()
    radius = receptive_radius(module, 1 if module.color == "y" else 3)

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return SRModel(run, int(module.scale), module.color, module.input_kind, source, receptive_radius=radius)


def _from_mlflow(uri: str, threads: int, engine=None, precision: str | None = None) -> SRModel:
    import mlflow

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tempfile.mkdtemp(prefix="srstyle-")))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad URI
        raise ModelLoadError(f"{uri}: cannot download the MLflow model ({exc})") from None
    onnx_files = sorted(local.rglob("*.onnx"))
    if onnx_files:
        return _onnx_model(onnx_files[0], threads, engine, precision)
    mlmodel = local / "MLmodel"
    if mlmodel.is_file() and "pytorch" in mlmodel.read_text():
        import mlflow.pytorch

        return _torch_model(mlflow.pytorch.load_model(str(local)), uri)
    raise ModelLoadError(f"{uri}: holds neither an ONNX nor a PyTorch MLflow model")


def load_sr_model(spec: str | Path, threads: int = 0, engine=None, precision: str | None = None) -> SRModel:
    """Load ``spec``: a ``.onnx`` file, a trainer ``.pt`` file, or an MLflow model URI.

    ONNX models run on onnxruntime with the ``engine`` settings (an :class:`~srstyle.config.EngineConfig`;
    ``threads`` overrides its intra-op threads); ``precision`` ("fp32"/"int8") picks that exported variant
    of an ``.onnx`` file (None: the file as given). A ``.pt`` file runs on PyTorch, the fallback.
    """
    text = str(spec)
    if "://" in text or text.startswith(("runs:/", "models:/")):
        return _from_mlflow(text, threads, engine, precision)
    path = Path(text)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found (give an .onnx file, a model.pt or an MLflow URI)")
    if path.suffix == ".onnx":
        return _onnx_model(path, threads, engine, precision)
    if path.suffix in (".pt", ".pth"):
        from .models.files import load_model_file

        try:
            return _torch_model(load_model_file(path), str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{path}: not a model file written by srstyle's trainer ({exc})") from None
    raise ModelLoadError(f"{path}: unknown model type {path.suffix!r}; expected .onnx or .pt")


def super_resolve_y(model: SRModel, y: np.ndarray) -> np.ndarray:
    """LR luma (H,W) on the 0-255 scale -> SR luma (H*s,W*s) on the 0-255 scale, float32, unclipped."""
    x = y.astype(np.float32) / 255.0
    return model.predict(x[None, None])[0, 0] * 255.0


def upscale_rgb(model: SRModel, rgb: np.ndarray) -> np.ndarray:
    """Super-resolve an HxWx3 uint8 RGB image; returns (H*s)x(W*s)x3 uint8."""
    h, w = rgb.shape[:2]
    size = (h * model.scale, w * model.scale)
    if model.color == "rgb":
        x = rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        return to_uint8(model.predict(x)[0].transpose(1, 2, 0), 255.0)
    ycbcr = rgb_to_ycbcr(rgb)
    out = np.empty((*size, 3), dtype=np.float64)
    out[..., 0] = super_resolve_y(model, ycbcr[..., 0])
    out[..., 1] = bicubic_float(ycbcr[..., 1], size)
    out[..., 2] = bicubic_float(ycbcr[..., 2], size)
    return to_uint8(ycbcr_to_rgb(out), 255.0)


def model_y_output(model: SRModel, lr_rgb: np.ndarray) -> np.ndarray:
    """The model's SR luma (0-255, rounded to 8 bits as a saved image would be) for an LR RGB image."""
    if model.color == "rgb":
        return rgb_to_y(upscale_rgb(model, lr_rgb))
    return np.clip(np.rint(super_resolve_y(model, rgb_to_y(lr_rgb))), 0, 255)


def describe(model: SRModel) -> str:
    return json.dumps({"source": model.source, "scale": model.scale, "color": model.color, "input": model.input_kind})
