"""Benchmark tables: model x dataset x scale, PSNR/SSIM on Y (BT.601, border = scale), bicubic first,
published numbers beside ours.

Degradation (``benchmark.degradation``): ``matlab`` (default, as the published tables: MATLAB-compatible
bicubic ``imresize`` of the mod-cropped HR) or ``pil``. The bicubic row upscales the same LR image with the
same resizer.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from ..color import rgb_to_y
from ..imresize import imresize
from ..inference import SRModel, model_y_output
from ..io import load_rgb, read_json
from ..resize import bicubic_rgb, downscale_rgb, modcrop
from .metrics import psnr, ssim


def published_table() -> dict:
    text = resources.files("srstyle.evaluate").joinpath("published.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def published(dataset: str, scale: int, model_key: str) -> dict | None:
    data = published_table()
    entry = data["values"].get(dataset, {}).get(scale, {}).get(model_key)
    if entry is None:
        return None
    return {**entry, "source": data["sources"][entry["source"]]}


def degrade(hr: np.ndarray, scale: int, degradation: str) -> np.ndarray:
    if degradation == "matlab":
        return imresize(hr, 1 / scale)
    return downscale_rgb(hr, scale)


def upscale_bicubic(lr: np.ndarray, scale: int, degradation: str) -> np.ndarray:
    if degradation == "matlab":
        return imresize(lr, scale)
    return bicubic_rgb(lr, (lr.shape[0] * scale, lr.shape[1] * scale))


def score_dataset(model: SRModel | None, folder: Path, scale: int, degradation: str, max_pixels: int) -> dict:
    """Mean PSNR/SSIM of ``model`` (None = bicubic) on every image of a prepared benchmark folder."""
    values = []
    for entry in read_json(folder / "manifest.json"):
        hr = modcrop(load_rgb(folder / entry["file"], max_pixels), scale)
        lr = degrade(hr, scale, degradation)
        out_y = rgb_to_y(upscale_bicubic(lr, scale, degradation)) if model is None else model_y_output(model, lr)
        hr_y = rgb_to_y(hr)
        values.append((psnr(out_y, hr_y, border=scale), ssim(out_y, hr_y, border=scale)))
    arr = np.array(values)
    return {"psnr": round(float(arr[:, 0].mean()), 4), "ssim": round(float(arr[:, 1].mean()), 4), "images": len(values)}


def published_key(arch: str, kwargs: dict) -> str:
    if arch == "edsr" and kwargs.get("config", "baseline") == "baseline":
        return "edsr_baseline"
    return arch


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | dataset | scale | PSNR | SSIM | published PSNR | published SSIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r.get("published") or {}
        lines.append(f"| {r['model']} | {r['dataset']} | x{r['scale']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                     f"{p.get('psnr', '-')} | {p.get('ssim', '-')} |")
    sources = sorted({r["published"]["source"] for r in rows if r.get("published")})
    if sources:
        lines += ["", "Published numbers: " + "; ".join(sources) + "."]
    return "\n".join(lines) + "\n"


def benchmark_rows(runs: dict[str, Path], sets_dir: Path, datasets: list[str], degradation: str,
                   max_pixels: int) -> list[dict]:
    """One row per (dataset, scale, model): bicubic first, then every run of that scale, published beside.

    ``runs``: run name -> model.pt of a trained run.
    """
    import torch

    from ..inference import load_sr_model

    payloads = {run: torch.load(path, weights_only=True) for run, path in runs.items()}
    rows = []
    for dataset in datasets:
        for scale in sorted({p["scale"] for p in payloads.values()}):
            entries = [("bicubic", None, "bicubic")] + [
                (run, load_sr_model(runs[run]), published_key(p["arch"], p["kwargs"]))
                for run, p in payloads.items() if p["scale"] == scale
            ]
            for label, model, key in entries:
                score = score_dataset(model, sets_dir / dataset, scale, degradation, max_pixels)
                rows.append({"model": label, "dataset": dataset, "scale": scale, **score,
                             "published": published(dataset, scale, key)})
    return rows


def metrics_table(rows: list[dict]) -> dict:
    """``dataset -> x<scale> -> model -> {psnr, ssim}``: the shape `dvc metrics show/diff` reads."""
    table: dict = {}
    for r in rows:
        table.setdefault(r["dataset"], {}).setdefault(f"x{r['scale']}", {})[r["model"]] = {
            "psnr": r["psnr"], "ssim": r["ssim"]}
    return table
