"""Supervised SR training (pixel loss) from the patch store: the step and validation functions that
:func:`srstyle.train.loop.fit` runs (budget, schedule, keep-best, exact resume, MLflow are the skeleton's).

One step: draw a batch from the seeded sampler, give each sample a random dihedral transform, forward, loss,
optimiser step. Validation: PSNR on Y over the validation patch store; ``model.pt`` holds the best
validated weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Params
from ..models import MODELS, build_model
from ..models.files import load_model_file, save_model_file  # noqa: F401  (re-exported for callers)
from .distributed import DistContext, distributed, wrap_loss
from .loop import Plan, Progress, Trainer, clip_gradients, fit, make_optimizer, seed_everything, select_device
from .loop import write_curve  # noqa: F401  (re-exported for callers)
from .sr_common import (TrainResult, model_input, open_stores, patch_strip, result_of,  # noqa: F401  (re-exported)
                        sr_final_logger, sr_fingerprint, sr_logged_params, sr_model_writer, validation_psnr)
from .srgan import srgan_trainer

log = logging.getLogger(__name__)

LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss}


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
            raise RuntimeError(f"{name}: the adversarial trainer runs in one process; launch it without torchrun")
        return _run(srgan_trainer(params, run_name, patches_dir, out_dir), params, tracking_root, progress, stop_after)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with distributed(select_device(cfg.device)) as ctx:
        trainer = supervised_trainer(params, run_name, patches_dir, out_dir, ctx)
        return _run(trainer, params, tracking_root, progress, stop_after)


def _run(trainer: Trainer, params: Params, tracking_root: Path | None, progress: bool, stop_after: int | None) -> TrainResult:
    r = fit(trainer, tracking=params.tracking, tracking_root=tracking_root, progress=progress, stop_after=stop_after)
    return result_of(r, trainer.monitor)


def supervised_trainer(params: Params, run_name: str, patches_dir: Path, out_dir: Path, ctx: DistContext) -> Trainer:
    run_cfg = params.run(run_name)
    cfg, name, scale = run_cfg.train, run_cfg.model, run_cfg.scale
    cls = MODELS.get(name)
    kwargs = run_cfg.model_kwargs
    train_store, val_store = open_stores(patches_dir, *run_cfg.store(cls.color))
    device = ctx.device

    seed_everything(params.seed)
    # channels_last: oneDNN's convolutions run about 2x faster on these small patches than in NCHW
    # (benchmarks/bench_espcn.py prints both); the weights are the same numbers in another layout.
    model = build_model(name, scale, **kwargs).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), cfg)
    loss_fn = LOSSES[cfg.loss]
    step_loss = wrap_loss(model, lambda m, x, y: compute_loss(m, x, y, loss_fn), ctx)

    def step(state: Progress, i: int, plan: Plan) -> dict[str, torch.Tensor]:
        # the global batch, drawn identically on every rank; prefetched on a worker thread where on
        lr, hr = state.next_batch(lambda indices, rng: train_store.batch_to(
            indices, rng if cfg.augment else None, device, shard=ctx.shard(len(indices)) if ctx.enabled else None))
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
