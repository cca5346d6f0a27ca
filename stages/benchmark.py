"""DVC stage `benchmark`: every run x benchmark set, PSNR/SSIM on Y, bicubic first, published numbers beside."""

import logging

import torch

from srstyle.config import load_params
from srstyle.data.benchmarks import prepare_benchmark
from srstyle.evaluate.benchmark import markdown, published, published_key, score_dataset
from srstyle.inference import load_sr_model
from srstyle.io import atomic_write, write_json
from srstyle.logs import setup_logging
from srstyle.paths import DataPaths, project_root
from srstyle.tracking import setup as setup_tracking

if __name__ == "__main__":
    setup_logging()
    params = load_params()
    root = project_root()
    paths = DataPaths(root)
    cfg = params.benchmark
    sets_dir, out = paths.data / "benchmarks", paths.data / "benchmark"
    for name in cfg.datasets:
        prepare_benchmark(name, sets_dir, paths.downloads, local_dir=cfg.local.get(name), embedded_from=paths.raw / "val",
                          max_pixels=params.validate_.max_pixels)

    runs = {run: torch.load(paths.model_dir(run) / "model.pt", weights_only=True) for run in params.runs}
    rows, table = [], {}
    for dataset in cfg.datasets:
        for scale in sorted({p["scale"] for p in runs.values()}):
            entries = [("bicubic", None, "bicubic")] + [
                (run, load_sr_model(paths.model_dir(run) / "model.pt"), published_key(p["arch"], p["kwargs"]))
                for run, p in runs.items() if p["scale"] == scale
            ]
            for label, model, key in entries:
                score = score_dataset(model, sets_dir / dataset, scale, cfg.degradation, params.validate_.max_pixels)
                rows.append({"model": label, "dataset": dataset, "scale": scale, **score,
                             "published": published(dataset, scale, key)})
                table.setdefault(dataset, {}).setdefault(f"x{scale}", {})[label] = {"psnr": score["psnr"], "ssim": score["ssim"]}

    write_json(table, out / "table.json")
    write_json(rows, out / "rows.json")
    text = markdown(rows)
    with atomic_write(out / "table.md", "w") as f:
        f.write(text)
    import mlflow

    setup_tracking(params.tracking, root)
    with mlflow.start_run(run_name="benchmark", tags={"task": "benchmark", "degradation": cfg.degradation}):
        for r in rows:
            mlflow.log_metrics({f"{r['dataset']}_x{r['scale']}_{r['model']}_psnr": r["psnr"],
                                f"{r['dataset']}_x{r['scale']}_{r['model']}_ssim": r["ssim"]})
        mlflow.log_artifact(str(out / "table.md"))
    logging.getLogger("benchmark").info("\n%s", text)
