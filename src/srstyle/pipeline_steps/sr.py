"""Super-resolution steps after training: evaluate@<run>, export_onnx@<run>, compare."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Params
from ..io import atomic_write, load_rgb, read_json, save_png, write_json
from ..paths import DataPaths
from ..tracking import resume_run

log = logging.getLogger(__name__)


def perceptual_net(params: Params):
    """The VGG of ``vgg_distance``, with the weights of the ``perceptual`` block (the SRGAN content loss's)."""
    from ..evaluate.perceptual import VGGDistance

    return VGGDistance(params.perceptual.weights, params.perceptual.allow_random_init)


def evaluate_run(params: Params, root: Path, run: str) -> dict:
    """PSNR/SSIM on Y, NIQE and vgg_distance of the model and bicubic, with pictures; logged into the run's
    training MLflow run."""
    from ..data.unseen import unseen_photos
    from ..evaluate.sr import evaluate_sr
    from ..inference import load_sr_model

    paths = DataPaths(root)
    model_dir, out, cfg = paths.model_dir(run), paths.eval_dir(run), params.evaluate
    vgg = perceptual_net(params) if cfg.perceptual else None
    metrics = evaluate_sr(load_sr_model(model_dir / "model.pt"), paths.validated, paths.raw, out,
                          crop=cfg.crop_size, max_pixels=params.validate_.max_pixels,
                          perceptual=cfg.perceptual, vgg=vgg, vgg_crop=cfg.vgg_crop, unseen=unseen_photos())
    with resume_run(model_dir, params.tracking, root):
        import mlflow

        mlflow.log_metrics({f"eval_{k}": v for k, v in metrics.items() if isinstance(v, float)})
        if vgg is not None:
            mlflow.set_tag("vgg_distance_backbone", vgg.description)
        for f in ("metrics.json", "per_image.csv", "comparison.png"):
            mlflow.log_artifact(str(out / f), artifact_path="evaluation")
    log.info("%s: %s", run, metrics)
    return metrics


def export_run(params: Params, root: Path, run: str) -> dict:
    """ONNX (dynamic N/H/W, parity-checked) logged as the run's ``onnx_model``; then the int8 variant; then
    every precision variant scored on validation and unseen photos (``<run>.precision.json``)."""
    import mlflow
    import onnx

    from ..export.onnx import export_and_check
    from ..export.quantize import export_int8
    from ..models.files import load_model_file

    paths = DataPaths(root)
    model_dir, out = paths.model_dir(run), paths.onnx_dir(run)
    model = load_model_file(model_dir / "model.pt")
    with resume_run(model_dir, params.tracking, root) as mlrun:
        report = export_and_check(model, out, run, opset=params.export.opset, atol=params.export.atol,
                                  metadata={"mlflow_run_id": mlrun.info.run_id, "run": run})
        mlflow.log_metric("onnx_max_abs_diff", report["max_abs_diff"])
        mlflow.onnx.log_model(onnx.load(str(out / report["file"])), name="onnx_model",
                              pip_requirements=["onnxruntime", "numpy"])
        if params.export.int8.enabled:
            int8 = export_int8(out / report["file"], paths.patches, paths.validated, paths.raw, params.export.int8,
                               engine=params.engine, seed=params.seed, max_pixels=params.validate_.max_pixels)
            mlflow.log_metrics({f"onnx_{k}": float(v) for k, v in int8.items() if isinstance(v, (int, float))})
            mlflow.log_artifact(str(out / int8["file"]), artifact_path="onnx_int8")
            log.info("%s int8: %s", run, int8)
        if params.export.evaluate_precisions:
            from ..export.precision import evaluate_precisions

            record = evaluate_precisions(out / report["file"], paths.validated, paths.raw, engine=params.engine,
                                         max_drop_db=params.export.max_drop_db, max_pixels=params.validate_.max_pixels)
            mlflow.log_metrics({f"precision_{k}_{m}": float(v) for k, s in record["variants"].items()
                                for m, v in s.items() if isinstance(v, (int, float))})
            mlflow.log_artifact(str(out / f"{run}.precision.json"), artifact_path="onnx_int8")
    log.info("%s: %s", run, report)
    return report


def summary_table(summary: dict[str, dict]) -> str:
    lines = ["| run | scale | PSNR | SSIM | bicubic PSNR | bicubic SSIM | gain (dB) | NIQE | bicubic NIQE "
             "| VGG dist. | bicubic VGG dist. |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda m, k: "-" if m.get(k) is None else f"{m[k]:.4f}"  # noqa: E731 - absent when perceptual is off
    for run, m in summary.items():
        lines.append(f"| {run} | x{m['scale']} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['bicubic_psnr']:.2f} | "
                     f"{m['bicubic_ssim']:.4f} | {m['psnr_gain']:+.2f} | {fmt(m, 'niqe')} | {fmt(m, 'bicubic_niqe')} "
                     f"| {fmt(m, 'vgg_distance')} | {fmt(m, 'bicubic_vgg_distance')} |")
    return "\n".join(lines) + "\n"


def compare_runs(params: Params, root: Path) -> dict:
    """Every trained run on the same crop of the first validation image, and one metrics table."""
    from ..evaluate.compare import all_models_comparison
    from ..inference import load_sr_model

    paths = DataPaths(root)
    out = paths.data / "compare"
    models = {run: load_sr_model(paths.model_dir(run) / "model.pt") for run in params.runs}
    first_val = next(m for m in read_json(paths.validated / "manifest.json") if m["split"] == "val")
    picture = all_models_comparison(models, load_rgb(paths.raw / first_val["file"]), params.evaluate.crop_size)
    save_png(picture, out / "all_models.png")
    summary = {run: read_json(paths.eval_dir(run) / "metrics.json") for run in params.runs}
    write_json(summary, out / "summary.json")
    text = summary_table(summary)
    with atomic_write(out / "summary.md", "w") as f:
        f.write(text)
    log.info("\n%s", text)
    return summary
