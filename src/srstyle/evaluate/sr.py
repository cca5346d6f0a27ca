"""The evaluate stage: the standard SR protocol on every validation image, model against bicubic.

Per image: mod-crop HR to the scale; LR = antialiased bicubic downscale of the RGB HR; the model
super-resolves Y (BT.601) and chroma is bicubic-upscaled (the prediction core, :mod:`srstyle.predict`, for
ONNX and torch models alike); PSNR and SSIM on Y with ``scale`` pixels shaved.
The bicubic baseline is the bicubic upscale of the same LR image, measured the same way.

Perceptual metrics (the evaluate stage turns them on; int8 checks and budget sweeps leave them off):
* ``niqe`` (:mod:`.niqe`, no reference, lower = more natural) of the saved 8-bit RGB output's Y, border
  ``scale`` shaved, and ``hr_niqe`` of the ground truth the same way, the level a perfect model would reach;
* ``vgg_distance`` (:mod:`.perceptual`, full reference, lower = closer) of the RGB output to the HR image,
  border shaved, on the central ``vgg_crop`` window (0 = the whole image; VGG on CPU costs ~3 s per 512^2).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..color import rgb_to_y
from ..io import atomic_write, load_rgb, read_json, save_png, write_json
from ..resize import bicubic_rgb, downscale_rgb, modcrop
from ..predict import SRPredictor
from .compare import image_comparison
from .metrics import psnr, ssim
from .niqe import niqe

if TYPE_CHECKING:  # torch stays out of this module's imports: the int8 check scores without it
    from .perceptual import VGGDistance

log = logging.getLogger(__name__)


def evaluate_image(model: SRPredictor, hr_rgb: np.ndarray, *, perceptual: bool = False,
                   vgg: VGGDistance | None = None, vgg_crop: int = 0) -> dict:
    """PSNR/SSIM of model and bicubic on one image; with ``perceptual`` also NIQE (and ``vgg_distance`` when a
    ``vgg`` is given) of both and NIQE of the HR image."""
    return _score(model, hr_rgb, perceptual, vgg, vgg_crop)[0]


def _score(model: SRPredictor, hr_rgb: np.ndarray, perceptual: bool, vgg: VGGDistance | None,
           vgg_crop: int) -> tuple[dict, np.ndarray, np.ndarray | None]:
    s = model.scale
    hr = modcrop(hr_rgb, s)
    lr = downscale_rgb(hr, s)
    hr_y = rgb_to_y(hr)
    sr_y = model.luma(lr)
    bic_rgb = bicubic_rgb(lr, hr.shape[:2])
    bic_y = rgb_to_y(bic_rgb)
    row = {
        "psnr": psnr(sr_y, hr_y, border=s),
        "ssim": ssim(sr_y, hr_y, border=s),
        "bicubic_psnr": psnr(bic_y, hr_y, border=s),
        "bicubic_ssim": ssim(bic_y, hr_y, border=s),
    }
    sr_rgb = None
    if perceptual:
        sr_rgb = model.upscale(lr)
        row.update(niqe=niqe(sr_rgb, border=s), bicubic_niqe=niqe(bic_rgb, border=s), hr_niqe=niqe(hr, border=s))
        if vgg is not None:
            from .perceptual import shave_crop

            ref = vgg.features(shave_crop(hr, s, vgg_crop))
            row["vgg_distance"] = vgg.between(vgg.features(shave_crop(sr_rgb, s, vgg_crop)), ref)
            row["bicubic_vgg_distance"] = vgg.between(vgg.features(shave_crop(bic_rgb, s, vgg_crop)), ref)
    row.update(height=hr.shape[0], width=hr.shape[1])
    return row, lr, sr_rgb


def evaluate_sr(
    model: SRPredictor, validated_dir: Path, raw_dir: Path, out_dir: Path, *, crop: int = 96, max_pixels: int = 40_000_000,
    perceptual: bool = False, vgg: VGGDistance | None = None, vgg_crop: int = 0,
    unseen: list[tuple[str, np.ndarray]] | None = None,
) -> dict:
    """Evaluate on the validation split; writes metrics.json, per_image.csv and comparison.png.

    ``perceptual``/``vgg``/``vgg_crop``: see :func:`evaluate_image` (the evaluate stage passes them).
    ``unseen``: (name, RGB) photos outside training *and* validation (:mod:`srstyle.data.unseen`), scored for
    PSNR/SSIM only: ``unseen_psnr_gain`` is the gain no checkpoint choice could have flattered.
    """
    manifest = [m for m in read_json(validated_dir / "manifest.json") if m["split"] == "val"]
    if not manifest:
        raise ValueError(f"{validated_dir / 'manifest.json'}: no validation images to evaluate on")
    rows, strips = [], []
    for m in manifest:
        hr = load_rgb(raw_dir / m["file"], max_pixels)
        scores, lr, sr_rgb = _score(model, hr, perceptual, vgg, vgg_crop)
        row = {"image": m["file"], "split": "val", **scores}
        rows.append(row)
        strips.append(image_comparison(lr, model.upscale(lr) if sr_rgb is None else sr_rgb, modcrop(hr, model.scale), crop))
        log.info("%s: %.2f dB (bicubic %.2f dB)", m["file"], row["psnr"], row["bicubic_psnr"])

    unseen_rows = [{"image": name, "split": "unseen", **_score(model, rgb, False, None, 0)[0]} for name, rgb in unseen or []]

    def mean(key: str, of: list[dict] = rows) -> float:
        return float(np.mean([r[key] for r in of]))

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
    for key in ("niqe", "bicubic_niqe", "hr_niqe", "vgg_distance", "bicubic_vgg_distance"):
        if key in rows[0]:
            metrics[key] = round(mean(key), 4)
    if unseen_rows:
        metrics["unseen_images"] = len(unseen_rows)
        for key in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim"):
            metrics[f"unseen_{key}"] = round(mean(key, unseen_rows), 4)
        metrics["unseen_psnr_gain"] = round(metrics["unseen_psnr"] - metrics["unseen_bicubic_psnr"], 4)
        metrics["unseen_ssim_gain"] = round(metrics["unseen_ssim"] - metrics["unseen_bicubic_ssim"], 4)
        log.info("unseen photos: %.2f dB (bicubic %.2f dB)", metrics["unseen_psnr"], metrics["unseen_bicubic_psnr"])

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(metrics, out_dir / "metrics.json")
    with atomic_write(out_dir / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))  # unseen rows: no perceptual columns (left empty)
        writer.writeheader()
        for r in rows + unseen_rows:
            writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()})
    width = max(s.shape[1] for s in strips)
    padded = [np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips]
    save_png(np.concatenate(padded, axis=0), out_dir / "comparison.png")
    return metrics
