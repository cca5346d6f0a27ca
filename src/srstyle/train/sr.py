"""Supervised SR training (pixel loss) from the patch store: the step and validation functions that
:func:`srstyle.train.loop.fit` runs (budget, schedule, keep-best, exact resume, MLflow are the skeleton's).

One step: draw a batch from the seeded sampler, apply one random dihedral transform, forward, loss,
optimiser step. Validation: PSNR on Y over the validation patch store; ``model.pt`` holds the best
validated weights.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..color import rgb_to_y
from ..config import Params
from ..data.datasets import PatchStore
from ..data.patches import store_name
from ..models import MODELS, build_model, model_info
from ..models.files import load_model_file, save_model_file  # noqa: F401  (re-exported for callers)
from .distributed import DistContext, distributed, wrap_loss
from .loop import FitResult, Plan, Progress, Trainer, clip_gradients, fingerprint, fit, make_optimizer, seed_everything, select_device
from .loop import write_curve  # noqa: F401  (re-exported for callers)

log = logging.getLogger(__name__)

LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss}


@dataclass(frozen=True)
class TrainResult:
    steps: int
    final_loss: float
    best_val_psnr: float
    final_val_psnr: float
    patches_per_s: float
    run_id: str | None


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


def open_stores(patches_dir: Path, color: str, scale: int) -> tuple[PatchStore, PatchStore]:
    name = store_name(color, scale)
    try:
        return PatchStore(patches_dir / "train" / name), PatchStore(patches_dir / "val" / name)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}. The patches stage builds the {name} stores for every run in params.yaml `runs`") from None


def compute_loss(model: nn.Module, x: torch.Tensor, target: torch.Tensor, loss_fn) -> torch.Tensor:
    """The model's own training loss when it has one (DRCN's recursive supervision), else loss_fn.

    Every output pixel counts, the patch borders too: leaving them out (valid-region loss) measured -0.48 dB
    against bicubic on the validation photos (+0.63 with them), the image borders then being untrained."""
    if hasattr(model, "training_loss"):
        return model.training_loss(x, target, loss_fn)
    return loss_fn(model(x), target)


def train_sr(
    params: Params,
    run_name: str,
    patches_dir: Path,
    out_dir: Path,
    *,
    tracking_root: Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train the run ``runs.<run_name>``; write ``model.pt`` and metrics to ``out_dir``.

    ``stop_after`` ends training early (after that many steps in this call) as if it had been
    interrupted; tests use it to check resume. ``tracking_root`` None disables MLflow.
    Under ``torchrun`` this is data-parallel training (see :mod:`srstyle.train.distributed`).
    """
    run_cfg = params.run(run_name)
    cfg, name = run_cfg.train, run_cfg.model
    cls = MODELS.get(name)
    if getattr(cls, "trainer", "supervised") == "adversarial":
        from .distributed import launched_by_torchrun

        if launched_by_torchrun():
            raise NotImplementedError(f"{name}: the adversarial trainer runs in one process; launch it without torchrun")
        from .srgan import srgan_trainer

        return _run(srgan_trainer(params, run_name, patches_dir, out_dir), params, tracking_root, progress, stop_after)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with distributed(select_device(cfg.device)) as ctx:
        trainer = supervised_trainer(params, run_name, patches_dir, out_dir, ctx)
        return _run(trainer, params, tracking_root, progress, stop_after)


def _run(trainer: Trainer, params: Params, tracking_root: Path | None, progress: bool, stop_after: int | None) -> TrainResult:
    r = fit(trainer, tracking=params.tracking, tracking_root=tracking_root, progress=progress, stop_after=stop_after)
    return TrainResult(steps=r.steps, final_loss=r.final_loss,
                       best_val_psnr=r.best_value if r.best_value is not None else math.nan,
                       final_val_psnr=r.final_value if r.final_value is not None else math.nan,
                       patches_per_s=r.items_per_s, run_id=r.run_id)


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
        from ..evaluate.compare import patch_strip
        from ..tracking import pip_requirements

        mlflow.log_image(patch_strip(model, val_store, count=4), "val_patches_lr_bicubic_sr_hr.png")
        mlflow.pytorch.log_model(
            model.cpu(), name="model", serialization_format="pickle", pip_requirements=pip_requirements(),
            metadata={"arch": name, "scale": scale, "input": "Y (BT.601) in [0,1]" if model.color == "y" else "RGB in [0,1]"},
        )
    return log_final


def supervised_trainer(params: Params, run_name: str, patches_dir: Path, out_dir: Path, ctx: DistContext) -> Trainer:
    run_cfg = params.run(run_name)
    cfg, name, scale = run_cfg.train, run_cfg.model, run_cfg.scale
    cls = MODELS.get(name)
    kwargs = params.model_kwargs(name)
    train_store, val_store = open_stores(patches_dir, cls.color, scale)
    device = ctx.device

    seed_everything(params.seed)
    # channels_last: oneDNN's convolutions run about 2x faster on these small patches than in NCHW
    # (benchmarks/bench_espcn.py prints both); the weights are the same numbers in another layout.
    model = build_model(name, scale, **kwargs).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), cfg)
    loss_fn = LOSSES[cfg.loss]
    step_loss = wrap_loss(model, lambda m, x, y: compute_loss(m, x, y, loss_fn), ctx)

    def step(state: Progress, i: int, plan: Plan) -> dict[str, torch.Tensor]:
        indices = state.sampler.next_indices()  # the global batch, drawn identically on every rank
        if ctx.enabled:
            indices = indices[ctx.shard(len(indices))]
        lr, hr = train_store.batch(indices, state.augment if cfg.augment else None)
        lr = lr.to(device, non_blocking=True, memory_format=torch.channels_last)
        hr = hr.to(device, non_blocking=True, memory_format=torch.channels_last)
        loss = step_loss(model_input(lr, cls.input_kind, scale), hr)
        state.optimize(loss, optimizer, clip=lambda: clip_gradients(model, optimizer, cfg))
        return {"train_loss": loss.detach()}

    return Trainer(
        name=run_name, out_dir=out_dir, cfg=cfg, seed=params.seed, n_items=len(train_store), model=model,
        optimizers={"model": optimizer}, step=step, save_model=sr_model_writer(name, scale, kwargs),
        fingerprint=sr_fingerprint(cfg, kwargs, params.seed, train_store, val_store),
        validate=lambda m: {"val_psnr": validation_psnr(m, val_store, device)},
        mlflow_params=sr_logged_params(run_cfg, params, kwargs, device, train_store, val_store, world_size=ctx.world_size),
        mlflow_tags={"task": "super-resolution", "srstyle.run": run_name},
        log_final=sr_final_logger(val_store, name, scale), ctx=ctx,
    )
