"""The evaluate stage: the standard SR protocol on every validation image, model against bicubic.

Per image: mod-crop HR to the scale; LR = antialiased bicubic downscale of the RGB HR; the model
super-resolves Y (BT.601) and chroma is bicubic-upscaled (the prediction core, :mod:`srstyle.predict`, for
ONNX and torch models alike); PSNR and SSIM on Y with ``scale`` pixels shaved.
The bicubic baseline is the bicubic upscale of the same LR image, measured the same way.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from ..color import rgb_to_y
from ..io import atomic_write, load_rgb, read_json, save_png, write_json
from ..resize import bicubic_rgb, downscale_rgb, modcrop
from ..predict import SRPredictor
from .compare import image_comparison
from .metrics import psnr, ssim

log = logging.getLogger(__name__)


def evaluate_image(model: SRPredictor, hr_rgb: np.ndarray) -> dict:
    s = model.scale
    hr = modcrop(hr_rgb, s)
    lr = downscale_rgb(hr, s)
    hr_y = rgb_to_y(hr)
    sr_y = model.luma(lr)
    bic_y = rgb_to_y(bicubic_rgb(lr, hr.shape[:2]))
    return {
        "psnr": psnr(sr_y, hr_y, border=s),
        "ssim": ssim(sr_y, hr_y, border=s),
        "bicubic_psnr": psnr(bic_y, hr_y, border=s),
        "bicubic_ssim": ssim(bic_y, hr_y, border=s),
        "height": hr.shape[0],
        "width": hr.shape[1],
    }


def evaluate_sr(
    model: SRPredictor, validated_dir: Path, raw_dir: Path, out_dir: Path, *, crop: int = 96, max_pixels: int = 40_000_000
) -> dict:
    """Evaluate on the validation split; writes metrics.json, per_image.csv and comparison.png."""
    manifest = [m for m in read_json(validated_dir / "manifest.json") if m["split"] == "val"]
    if not manifest:
        raise ValueError(f"{validated_dir / 'manifest.json'}: no validation images to evaluate on")
    rows, strips = [], []
    for m in manifest:
        hr = load_rgb(raw_dir / m["file"], max_pixels)
        row = {"image": m["file"], **evaluate_image(model, hr)}
        rows.append(row)
        lr = downscale_rgb(modcrop(hr, model.scale), model.scale)
        strips.append(image_comparison(lr, model.upscale(lr), modcrop(hr, model.scale), crop))
        log.info("%s: %.2f dB (bicubic %.2f dB)", m["file"], row["psnr"], row["bicubic_psnr"])

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in rows]))

    metrics = {
        "scale": model.scale,
        "images": len(rows),
        "psnr": round(mean("psnr"), 4),
        "ssim": round(mean("ssim"), 4),
        "bicubic_psnr": round(mean("bicubic_psnr"), 4),
        "bicubic_ssim": round(mean("bicubic_ssim"), 4),
    }
    metrics["psnr_gain"] = round(metrics["psnr"] - metrics["bicubic_psnr"], 4)
    metrics["ssim_gain"] = round(metrics["ssim"] - metrics["bicubic_ssim"], 4)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(metrics, out_dir / "metrics.json")
    with atomic_write(out_dir / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()})
    width = max(s.shape[1] for s in strips)
    padded = [np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips]
    save_png(np.concatenate(padded, axis=0), out_dir / "comparison.png")
    return metrics
