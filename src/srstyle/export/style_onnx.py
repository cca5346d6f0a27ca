"""ONNX export of the style networks, each checked against onnxruntime on odd-sized inputs.

* Johnson net: ``content`` [N,3,H,W] in [0,1] -> ``stylised`` [N,3,H,W] (clip to [0,1] before 8-bit).
* Meta network, as two graphs so a style is described once and then applied to any number of frames:
  ``metanet.onnx``: ``style`` [1,3,H,W] in [0,1] (longest side = the training style_size) -> ``weights`` [1,K];
  ``transformer.onnx``: ``content`` [N,3,H,W] and ``weights`` [K] -> ``stylised`` [N,3,H,W].
Parity is measured on the images users see: outputs clipped to [0, 1], on the 0-255 scale, against PyTorch
run in float64. (PyTorch's own float32 result is ~1e-3 away from float64 on these 16-conv, instance-normalised
networks, as far as onnxruntime's is; comparing two float32 runs would test rounding, not the export.
The float32-vs-float32 difference is reported too.)
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor, nn

from ..models.style.metanet import META_TAPS, MetaNet, style_statistics
from .graph import export_graph, max_abs_diff, ort_session


class ExportParityError(AssertionError):
    pass


class StyleToWeights(nn.Module):
    def __init__(self, backbone: nn.Module, metanet: MetaNet):
        super().__init__()
        self.backbone, self.metanet = backbone, metanet

    def forward(self, style: Tensor) -> Tensor:
        return self.metanet(style_statistics(self.backbone(style), META_TAPS))


class WeightsTransformer(nn.Module):
    def __init__(self, metanet: MetaNet):
        super().__init__()
        self.transformer = metanet.transformer

    def forward(self, content: Tensor, weights: Tensor) -> Tensor:
        return self.transformer(content, weights)


def _dims():
    return (torch.export.Dim("batch", max=256), torch.export.Dim("height", min=8, max=8192),
            torch.export.Dim("width", min=8, max=8192))


def _check(diff: float, path: Path, atol: float) -> None:
    if diff > atol:
        raise ExportParityError(f"{path}: onnxruntime differs from PyTorch by {diff:.3g} (0-255 scale) > atol {atol}")


def export_fast(net: nn.Module, path: Path, *, opset: int = 18, atol: float = 1e-3, metadata: dict | None = None) -> dict:
    n, h, w = _dims()
    export_graph(net, (torch.rand(1, 3, 64, 64),), path, input_names=["content"], output_names=["stylised"],
                 dynamic_shapes=({0: n, 2: h, 3: w},), opset=opset,
                 metadata={"method": "johnson", "input": "content: float32 [N,3,H,W] RGB in [0,1]",
                           "output": "stylised: float32 [N,3,H,W], clip to [0,1]", **(metadata or {})})
    x = torch.rand(2, 3, 61, 83, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected32 = net(x).clamp(0, 1).numpy() * 255
        expected = copy.deepcopy(net).double()(x.double()).clamp(0, 1).numpy() * 255
    got = ort_session(path).run(None, {"content": x.numpy()})[0].clip(0, 1) * 255
    diff = max_abs_diff(got, expected)
    _check(diff, path, atol)
    return {"file": path.name, "bytes": path.stat().st_size, "max_abs_diff_255": diff,
            "max_abs_diff_255_vs_torch_float32": max_abs_diff(got, expected32), "input_shape": list(x.shape)}


def export_meta(metanet: MetaNet, backbone: nn.Module, out_dir: Path, *, style_size: int, opset: int = 18,
                atol: float = 1e-3, metadata: dict | None = None) -> dict:
    n, h, w = _dims()
    k = metanet.transformer.num_weights
    to_weights, apply = StyleToWeights(backbone, metanet).eval(), WeightsTransformer(metanet).eval()
    meta_path, tr_path = out_dir / "metanet.onnx", out_dir / "transformer.onnx"
    common = {"method": "meta", "generated_weights": str(k), "style_size": str(style_size), **(metadata or {})}
    export_graph(to_weights, (torch.rand(1, 3, 64, 64),), meta_path, input_names=["style"], output_names=["weights"],
                 dynamic_shapes=({2: torch.export.Dim("style_h", min=32, max=4096),
                                  3: torch.export.Dim("style_w", min=32, max=4096)},), opset=opset,
                 metadata={**common, "input": f"style: float32 [1,3,H,W] RGB in [0,1], longest side {style_size}"})
    export_graph(apply, (torch.rand(1, 3, 64, 64), torch.zeros(k)), tr_path, input_names=["content", "weights"],
                 output_names=["stylised"], dynamic_shapes=({0: n, 2: h, 3: w}, None), opset=opset,
                 metadata={**common, "input": "content: float32 [N,3,H,W] RGB in [0,1]; weights: float32 [K] from metanet.onnx"})

    gen = torch.Generator().manual_seed(0)
    style, content = torch.rand(1, 3, 97, 75, generator=gen), torch.rand(2, 3, 61, 83, generator=gen)
    with torch.no_grad():
        theta32 = to_weights(style)
        expected32 = apply(content, theta32[0]).clamp(0, 1).numpy() * 255
        to_weights64, apply64 = copy.deepcopy(to_weights).double(), copy.deepcopy(apply).double()
        theta = to_weights64(style.double())
        expected = apply64(content.double(), theta[0]).clamp(0, 1).numpy() * 255
    got_theta = ort_session(meta_path).run(None, {"style": style.numpy()})[0]
    got = ort_session(tr_path).run(None, {"content": content.numpy(), "weights": got_theta[0]})[0].clip(0, 1) * 255
    weights_diff, diff = max_abs_diff(got_theta, theta.numpy()), max_abs_diff(got, expected)
    _check(diff, tr_path, atol)
    return {"metanet_bytes": meta_path.stat().st_size, "transformer_bytes": tr_path.stat().st_size,
            "weights_max_abs_diff": weights_diff, "max_abs_diff_255": diff,
            "max_abs_diff_255_vs_torch_float32": max_abs_diff(got, expected32), "generated_weights": k}

