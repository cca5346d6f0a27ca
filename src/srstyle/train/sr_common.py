"""What the SR trainers (supervised: :mod:`srstyle.train.sr`, adversarial: :mod:`srstyle.train.srgan`) share:
the patch stores, the model input, validation PSNR, the run fingerprint and logged parameters, the model file
and the final MLflow picture of validation patches.

Both trainers import this module and nothing of each other's (no import cycle); ``train/sr.py`` dispatches
a run to the adversarial trainer when its architecture asks for one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..color import rgb_to_y
from ..data.datasets import PatchStore, crop_mode, open_store
from ..data.patches import store_name
from ..evaluate.compare import gray_to_rgb, strip
from ..models import model_info
from ..models.files import save_model_file
from .loop import FitResult, fingerprint


@dataclass(frozen=True)
class TrainResult:
    """What a training run returns. ``monitor`` is the validation metric that picks ``model.pt``: val_psnr
    (higher is better) for pixel-loss training, val_content (the VGG content loss, lower is better) for SRGAN.
    ``best_val_psnr`` is the validation PSNR of the exported weights (for SRGAN: at its lowest content loss,
    not the highest PSNR seen), ``final_val_psnr`` the one of the last validation."""

    steps: int
    final_loss: float
    best_val_psnr: float
    final_val_psnr: float
    patches_per_s: float
    run_id: str | None
    monitor: str = "val_psnr"
    best_value: float = math.nan    # the monitored metric at the exported step
    final_value: float = math.nan   # ... and at the last validation


def result_of(r: FitResult, monitor: str) -> TrainResult:
    nan = math.nan
    psnr_rows = [row for row in r.history if "val_psnr" in row]
    best_rows = [row for row in psnr_rows if row["step"] == r.best_step]
    return TrainResult(
        steps=r.steps, final_loss=r.final_loss,
        best_val_psnr=best_rows[-1]["val_psnr"] if best_rows else (psnr_rows[-1]["val_psnr"] if psnr_rows else nan),
        final_val_psnr=psnr_rows[-1]["val_psnr"] if psnr_rows else nan, patches_per_s=r.items_per_s, run_id=r.run_id,
        monitor=monitor, best_value=r.best_value if r.best_value is not None else nan,
        final_value=r.final_value if r.final_value is not None else nan)


def model_input(lr: torch.Tensor, input_kind: str, scale: int) -> torch.Tensor:
    """Feed LR directly, or bicubic-upscaled first for the models that expect it (SRCNN, VDSR...).

    Same interpolation as :class:`srstyle.models.registry.LRInput`, which inference and export use.
    """
    if input_kind == "bicubic":
        return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    return lr


def _luma01(x: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) in [0,1] -> BT.601 Y on the 0-255 scale (C=1 is already Y/255)."""
    if x.shape[1] == 1:
        return x[:, 0] * 255.0
    return torch.from_numpy(rgb_to_y(x.permute(0, 2, 3, 1).double().numpy())).float()


@torch.no_grad()
def validation_psnr(model: nn.Module, store: PatchStore, device: torch.device, batch_size: int = 64) -> float:
    """PSNR on Y over the whole validation store, ``scale`` pixels shaved, outputs clamped to [0, 1]."""
    model.eval()
    info = model_info(model.registry_name)
    s = store.scale
    se, n = 0.0, 0
    for lr, hr in store.iter_batches(batch_size):
        sr = model(model_input(lr.to(device), info["input_kind"], s)).clamp_(0, 1).cpu()
        a, b = _luma01(sr)[:, s:-s, s:-s].double(), _luma01(hr)[:, s:-s, s:-s].double()
        se += float(((a - b) ** 2).sum())
        n += a.numel()
    model.train()
    return 10 * math.log10(255.0**2 / (se / n))


def open_stores(patches_dir: Path, color: str, scale: int, hr_size: int | None = None) -> tuple[PatchStore, PatchStore]:
    """The (train, validation) stores of a run. In random-crop mode (patches.crop) the training store is the
    one sub-image store of the mode and scale, cropping ``hr_size``; validation always reads a grid store."""
    name = store_name(color, scale, hr_size)
    shared = patches_dir / "train" / store_name(color, scale)
    try:
        train = open_store(shared, hr_size) if crop_mode(shared) == "random" else PatchStore(patches_dir / "train" / name)
        return train, PatchStore(patches_dir / "val" / name)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}. The patches stage builds the {name} stores for every run in params.yaml `runs`") from None


def sr_fingerprint(cfg, kwargs: dict, seed: int, train_store: PatchStore, val_store: PatchStore, *extra) -> str:
    # precision is left out: the skeleton adds the resolved one (auto and fp32 are the same run on a CPU where
    # auto picks fp32)
    return fingerprint(cfg.model_dump(exclude={"device", "threads", "checkpoint_every", "log_every", "precision"}), kwargs,
                       seed, train_store.index, val_store.index["count"], *extra)


def sr_logged_params(run_cfg, params: Params, kwargs: dict, device, train_store, val_store, **extra) -> dict:
    return {"run": run_cfg.name, "model": run_cfg.model, "scale": run_cfg.scale, "seed": params.seed,
            "device": str(device), **{f"train.{k}": v for k, v in run_cfg.train.model_dump().items()},
            **{f"model.{k}": v for k, v in kwargs.items()},
            "train_patches": len(train_store), "val_patches": len(val_store), **extra}


def sr_model_writer(name: str, scale: int, kwargs: dict):
    return lambda path, model, step: save_model_file(path, name, scale, kwargs, model, step)


def sr_final_logger(val_store: PatchStore, name: str, scale: int):
    def log_final(mlflow, model: nn.Module, result: FitResult) -> None:
        from ..tracking import pip_requirements

        mlflow.log_image(patch_strip(model, val_store, count=4), "val_patches_lr_bicubic_sr_hr.png")
        mlflow.pytorch.log_model(
            model.cpu(), name="model", serialization_format="pickle", pip_requirements=pip_requirements(),
            metadata={"arch": name, "scale": scale, "input": "Y (BT.601) in [0,1]" if model.color == "y" else "RGB in [0,1]"},
        )
    return log_final


def patch_strip(model: nn.Module, store: PatchStore, count: int = 4) -> np.ndarray:
    """Rows of LR | bicubic | model | HR for the first ``count`` validation patches (Y or RGB stores)."""
    device = next(model.parameters()).device
    idx = np.linspace(0, len(store) - 1, num=min(count, len(store))).astype(int)
    lr, hr = store.batch(idx)
    with torch.no_grad():
        sr = model(model_input(lr.to(device), model.input_kind, store.scale)).clamp(0, 1).cpu()
    bic = F.interpolate(lr, scale_factor=store.scale, mode="bicubic", align_corners=False).clamp(0, 1)
    near = F.interpolate(lr, scale_factor=store.scale, mode="nearest")

    def rgb(t) -> np.ndarray:
        a = (t.permute(1, 2, 0).numpy() * 255.0)
        return gray_to_rgb(a[..., 0]) if a.shape[-1] == 1 else np.clip(np.rint(a), 0, 255).astype(np.uint8)

    rows = [strip([rgb(near[i]), rgb(bic[i]), rgb(sr[i]), rgb(hr[i])]) for i in range(len(idx))]
    return np.concatenate(rows, axis=0)
