"""DVC stage `promote`: register every run's ONNX model in the MLflow registry (one registered model per
scale, e.g. sr-x3) and move `champion` only when a challenger beats it on validation PSNR by promote.margin_db
and the run ships (never inside `dvc exp run`: see srstyle.model_registry.ship_decision). The alias `perceptual`
of the same registered model moves apart from it, by promote.perceptual_metric (NIQE or vgg_distance)."""

from srstyle.config import load_params
from srstyle.logs import setup_logging
from srstyle.model_registry import promote_runs
from srstyle.paths import DataPaths, project_root

if __name__ == "__main__":
    setup_logging()
    root = project_root()
    promote_runs(load_params(), DataPaths(root), root)
