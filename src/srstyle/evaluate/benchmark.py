"""Benchmark tables: model x dataset x scale, PSNR/SSIM on Y (BT.601, border = scale), bicubic first,
published numbers beside ours; with ``perceptual`` also NIQE (Y of the 8-bit RGB output, border shaved) and
vgg_distance (RGB against HR, border shaved, central ``vgg_crop`` window), as the evaluate stage computes them.

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
from .niqe import niqe
from .perceptual import shave_crop


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


def score_dataset(model: SRModel | None, folder: Path, scale: int, degradation: str, max_pixels: int, *,
                  perceptual: bool = False, vgg=None, vgg_crop: int = 0) -> dict:
    """Mean PSNR/SSIM of ``model`` (None = bicubic) on every image of a prepared benchmark folder; with
    ``perceptual`` also NIQE, and vgg_distance when a :class:`~srstyle.evaluate.perceptual.VGGDistance` is given."""
    values: dict[str, list[float]] = {}
    for entry in read_json(folder / "manifest.json"):
        hr = modcrop(load_rgb(folder / entry["file"], max_pixels), scale)
        lr = degrade(hr, scale, degradation)
        bic = upscale_bicubic(lr, scale, degradation) if model is None else None
        out_y = rgb_to_y(bic) if model is None else model_y_output(model, lr)
        hr_y = rgb_to_y(hr)
        scores = {"psnr": psnr(out_y, hr_y, border=scale), "ssim": ssim(out_y, hr_y, border=scale)}
        if perceptual:
            out = np.clip(np.round(bic), 0, 255).astype(np.uint8) if model is None else model.upscale(lr)
            scores["niqe"] = niqe(out, border=scale)
            if vgg is not None:
                scores["vgg_distance"] = vgg(shave_crop(out, scale, vgg_crop), shave_crop(hr, scale, vgg_crop))
        for k, v in scores.items():
            values.setdefault(k, []).append(v)
    return {**{k: round(float(np.mean(v)), 4) for k, v in values.items()}, "images": len(values["psnr"])}


def published_key(arch: str, kwargs: dict) -> str:
    if arch == "edsr" and kwargs.get("config", "baseline") == "baseline":
        return "edsr_baseline"
    return arch


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | dataset | scale | PSNR | SSIM | NIQE | VGG dist. | published PSNR | published SSIM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda r, k: "-" if r.get(k) is None else f"{r[k]:.4f}"  # noqa: E731 - absent when perceptual is off
    for r in rows:
        p = r.get("published") or {}
        lines.append(f"| {r['model']} | {r['dataset']} | x{r['scale']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                     f"{fmt(r, 'niqe')} | {fmt(r, 'vgg_distance')} | {p.get('psnr', '-')} | {p.get('ssim', '-')} |")
    sources = sorted({r["published"]["source"] for r in rows if r.get("published")})
    if sources:
        lines += ["", "Published numbers: " + "; ".join(sources) + "."]
    return "\n".join(lines) + "\n"


def benchmark_rows(runs: dict[str, Path], sets_dir: Path, datasets: list[str], degradation: str,
                   max_pixels: int, *, perceptual: bool = False, vgg=None, vgg_crop: int = 0) -> list[dict]:
    """One row per (dataset, scale, model): bicubic first, then every run of that scale, published beside.

    ``runs``: run name -> model.pt of a trained run. ``perceptual``/``vgg``/``vgg_crop``: see :func:`score_dataset`.
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
                score = score_dataset(model, sets_dir / dataset, scale, degradation, max_pixels,
                                      perceptual=perceptual, vgg=vgg, vgg_crop=vgg_crop)
                rows.append({"model": label, "dataset": dataset, "scale": scale, **score,
                             "published": published(dataset, scale, key)})
    return rows


def metrics_table(rows: list[dict]) -> dict:
    """``dataset -> x<scale> -> model -> {psnr, ssim[, niqe, vgg_distance]}``: the shape `dvc metrics show/diff`
    reads."""
    table: dict = {}
    for r in rows:
        table.setdefault(r["dataset"], {}).setdefault(f"x{r['scale']}", {})[r["model"]] = {
            k: r[k] for k in ("psnr", "ssim", "niqe", "vgg_distance") if k in r}
    return table
