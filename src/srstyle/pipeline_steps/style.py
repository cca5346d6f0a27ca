"""Style-transfer steps after training: evaluate_style and export_style_onnx."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Params
from ..io import write_json

log = logging.getLogger(__name__)


def evaluate_style_step(params: Params, root: Path) -> dict:
    """Every style method on held-out content against Gatys; grids + metrics (logged to MLflow)."""
    from ..data.style_data import StylePaths
    from ..evaluate.style import evaluate_style

    paths = StylePaths(root)
    return evaluate_style(params, paths, paths.eval_dir, tracking_root=root)


def export_style(params: Params, root: Path) -> dict:
    """Each Johnson net, and the meta network as metanet.onnx + transformer.onnx, checked with onnxruntime."""
    from ..data.style_data import StylePaths
    from ..export.style_onnx import export_fast, export_meta
    from ..models.backbones import build_backbone
    from ..models.style.metanet import META_TAPS
    from ..train.style import load_style_net

    paths = StylePaths(root)
    out, opset, atol = paths.onnx_dir, params.export.opset, params.style.export_atol
    report = {}
    for style in params.style.fast.styles:
        net, _ = load_style_net(paths.fast_model_dir(style) / "model.pt")
        r = export_fast(net, out / f"fast_{style}.onnx", opset=opset, atol=atol, metadata={"style": style})
        report[f"fast_{style}_max_abs_diff_255"] = r["max_abs_diff_255"]
        report[f"fast_{style}_max_abs_diff_255_vs_torch_float32"] = r["max_abs_diff_255_vs_torch_float32"]
    net, _ = load_style_net(paths.meta_model_dir / "model.pt")
    bcfg = params.style.backbone
    backbone = build_backbone(bcfg.arch, list(META_TAPS), bcfg.weights, bcfg.allow_random_init, bcfg.pooling)
    r = export_meta(net, backbone, out, style_size=params.style.meta.style_size, opset=opset, atol=atol,
                    metadata={"backbone": backbone.description})
    report.update({f"meta_{k}": v for k, v in r.items()})
    if params.export.evaluate_precisions:
        from ..data.style_data import style_names
        from ..export.precision import evaluate_style_precisions

        # OpenVINO bf16 (and fp32) against onnxruntime fp32 on unseen photos and held-out paintings: the
        # record engine auto needs before it runs a style graph in anything but fp32
        records = evaluate_style_precisions(out, params.style.fast.styles, list(style_names(paths, "val").values()),
                                            min_agreement_db=params.export.style_min_agreement_db,
                                            engine=params.engine)
        report.update({f"precision_{graph.removesuffix('.onnx')}_{variant}_agreement_db": v["agreement_db"]
                       for graph, rec in records.items()
                       for variant, v in rec["variants"].items() if variant != "onnxruntime_fp32"})
    write_json(report, paths.base / "export_style_onnx.json")
    log.info("exported %s", report)
    return report
