"""DVC stage `export_style_onnx`: each Johnson net, and the meta network as metanet.onnx + transformer.onnx,
every graph checked against PyTorch with onnxruntime."""

import logging

from srstyle.config import load_params
from srstyle.data.style_data import StylePaths
from srstyle.export.style_onnx import export_fast, export_meta
from srstyle.io import write_json
from srstyle.logs import setup_logging
from srstyle.models.backbones import build_backbone
from srstyle.models.style.metanet import META_TAPS
from srstyle.paths import project_root
from srstyle.train.style import load_style_net

if __name__ == "__main__":
    setup_logging()
    params = load_params()
    paths = StylePaths(project_root())
    out = paths.onnx_dir
    opset, atol = params.export.opset, params.style.export_atol
    report = {}
    for style in params.style.fast.styles:
        net, info = load_style_net(paths.fast_model_dir(style) / "model.pt")
        r = export_fast(net, out / f"fast_{style}.onnx", opset=opset, atol=atol, metadata={"style": style})
        report[f"fast_{style}_max_abs_diff_255"] = r["max_abs_diff_255"]
        report[f"fast_{style}_max_abs_diff_255_vs_torch_float32"] = r["max_abs_diff_255_vs_torch_float32"]
    net, info = load_style_net(paths.meta_model_dir / "model.pt")
    bcfg = params.style.backbone
    backbone = build_backbone(bcfg.arch, list(META_TAPS), bcfg.weights, bcfg.allow_random_init, bcfg.pooling)
    r = export_meta(net, backbone, out, style_size=params.style.meta.style_size, opset=opset, atol=atol,
                    metadata={"backbone": backbone.description})
    report.update({f"meta_{k}": v for k, v in r.items()})
    write_json(report, paths.base / "export_style_onnx.json")
    logging.getLogger("export_style_onnx").info("exported %s", report)
