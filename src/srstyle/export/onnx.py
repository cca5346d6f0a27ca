"""ONNX export of SR models with dynamic height and width, checked against onnxruntime.

Contract of the exported graph: input ``lr`` float32 [N, C, H, W] in [0, 1] (C=1: BT.601 Y), output
``sr`` [N, C, H*s, W*s]. The scale, colour convention and origin are written into ``metadata_props`` so a
consumer needs nothing but the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io import write_json

log = logging.getLogger(__name__)


class ExportParityError(AssertionError):
    """onnxruntime disagrees with PyTorch beyond the tolerance."""


def export_sr_onnx(model: nn.Module, path: Path, *, opset: int = 18, metadata: dict[str, str] | None = None) -> Path:
    from ..models import as_lr_model
    from ..tiling import receptive_radius
    from .graph import export_graph

    model = as_lr_model(model).eval().cpu()
    channels = 1 if model.color == "y" else 3
    batch, height, width = torch.export.Dim("batch", max=1024), torch.export.Dim("height", max=16384), torch.export.Dim("width", max=16384)
    meta = {
        "scale": str(model.scale),
        "receptive_radius": str(receptive_radius(model, channels)),
        "color": model.color,
        "input_kind": model.input_kind,
        "arch": getattr(model, "registry_name", type(model).__name__),
        "input": "lr: float32 [N,C,H,W] in [0,1]; C=1 is BT.601 luma Y/255",
        "output": "sr: float32 [N,C,H*scale,W*scale], same convention (clip to [0,1] before 8-bit)",
        **(metadata or {}),
    }
    return export_graph(model, (torch.rand(1, channels, 24, 32),), path, input_names=["lr"], output_names=["sr"],
                        dynamic_shapes=({0: batch, 2: height, 3: width},), opset=opset, metadata=meta)


def check_parity(model: nn.Module, path: Path, shape_hw: tuple[int, int] = (37, 53), atol: float = 1e-4, seed: int = 0) -> dict:
    """Compare PyTorch and onnxruntime on a random odd-sized input; raise if they differ beyond ``atol``."""
    import onnxruntime as ort

    from ..models import as_lr_model

    model = as_lr_model(model).eval().cpu()
    channels = 1 if model.color == "y" else 3
    x = torch.rand(2, channels, *shape_hw, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != expected.shape:
        raise ExportParityError(f"{path}: onnxruntime output shape {got.shape} != PyTorch {expected.shape}")
    diff = float(np.max(np.abs(got - expected)))
    report = {"input_shape": list(x.shape), "output_shape": list(got.shape), "max_abs_diff": diff, "atol": atol}
    if diff > atol:
        raise ExportParityError(f"{path}: onnxruntime differs from PyTorch by {diff:.3g} > atol {atol}")
    return report


def export_and_check(model: nn.Module, out_dir: Path, name: str, *, opset: int, atol: float, metadata: dict | None = None) -> dict:
    path = export_sr_onnx(model, out_dir / f"{name}.onnx", opset=opset, metadata=metadata)
    report = {"bytes": path.stat().st_size, "opset": opset, **check_parity(model, path, atol=atol)}
    write_json(report, out_dir / "export.json")  # a DVC metrics file: numbers only
    return {"file": path.name, **report}
