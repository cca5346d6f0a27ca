"""The `benchmark` step: every run x benchmark set (PSNR/SSIM on Y, NIQE, vgg_distance; bicubic first, published
numbers beside), written as tables and logged as one MLflow run."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Params
from ..io import atomic_write, write_json
from ..paths import DataPaths

log = logging.getLogger(__name__)


def run_benchmarks(params: Params, root: Path) -> list[dict]:
    from ..data.benchmarks import prepare_benchmark
    from ..evaluate.benchmark import benchmark_rows, markdown, metrics_table

    paths, cfg = DataPaths(root), params.benchmark
    sets_dir, out = paths.data / "benchmarks", paths.data / "benchmark"
    for name in cfg.datasets:
        prepare_benchmark(name, sets_dir, paths.downloads, local_dir=cfg.local.get(name),
                          embedded_from=paths.raw / "val", max_pixels=params.validate_.max_pixels)
    runs = {run: paths.model_dir(run) / "model.pt" for run in params.runs}
    vgg = None
    if cfg.perceptual:
        from .sr import perceptual_net

        vgg = perceptual_net(params)
    rows = benchmark_rows(runs, sets_dir, cfg.datasets, cfg.degradation, params.validate_.max_pixels,
                          perceptual=cfg.perceptual, vgg=vgg, vgg_crop=cfg.vgg_crop)
    write_json(metrics_table(rows), out / "table.json")
    write_json(rows, out / "rows.json")
    text = markdown(rows)
    with atomic_write(out / "table.md", "w") as f:
        f.write(text)
    log_benchmark(params, root, rows, out / "table.md")
    log.info("\n%s", text)
    return rows


def log_benchmark(params: Params, root: Path, rows: list[dict], table_md: Path) -> str:
    """One MLflow run named `benchmark` with a metric per dataset/scale/model and the Markdown table."""
    import mlflow

    from ..tracking import setup

    setup(params.tracking, root)
    with mlflow.start_run(run_name="benchmark",
                          tags={"task": "benchmark", "degradation": params.benchmark.degradation}) as run:
        for r in rows:
            prefix = f"{r['dataset']}_x{r['scale']}_{r['model']}"
            mlflow.log_metrics({f"{prefix}_{k}": r[k] for k in ("psnr", "ssim", "niqe", "vgg_distance") if k in r})
        mlflow.log_artifact(str(table_md))
    return run.info.run_id
