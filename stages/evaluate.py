"""DVC stage `evaluate@<run>`: PSNR/SSIM on Y (BT.601, border = scale) of the model and bicubic, with pictures."""

import logging
import sys

from srstyle.config import load_params
from srstyle.evaluate.sr import evaluate_sr
from srstyle.inference import load_sr_model
from srstyle.logs import setup_logging
from srstyle.paths import DataPaths, project_root
from srstyle.tracking import resume_run

if __name__ == "__main__":
    setup_logging()
    run = sys.argv[1] if len(sys.argv) > 1 else "espcn_x3"
    params = load_params()
    root = project_root()
    paths = DataPaths(root)
    model_dir, out = paths.model_dir(run), paths.eval_dir(run)
    model = load_sr_model(model_dir / "model.pt")
    metrics = evaluate_sr(model, paths.validated, paths.raw, out, crop=params.evaluate.crop_size,
                          max_pixels=params.validate_.max_pixels)
    with resume_run(model_dir, params.tracking, root):
        import mlflow

        mlflow.log_metrics({f"eval_{k}": v for k, v in metrics.items() if isinstance(v, float)})
        for f in ("metrics.json", "per_image.csv", "comparison.png"):
            mlflow.log_artifact(str(out / f), artifact_path="evaluation")
    logging.getLogger("evaluate").info("%s: %s", run, metrics)
