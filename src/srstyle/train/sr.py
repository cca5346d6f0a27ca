"""Supervised SR training (pixel loss) from the patch store, with exact resume.

One step: draw a batch from the seeded sampler, apply one random dihedral transform, forward, loss,
Adam step. Every ``checkpoint_every`` steps the model, optimizer, scheduler, sampler and RNG states are
saved atomically; a rerun with the same configuration continues from there and ends bit-identical to an
uninterrupted run. Loss and validation PSNR go to MLflow and to ``curve.csv`` (a DVC plot).
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..color import rgb_to_y
from ..config import Params
from ..data.datasets import PatchStore
from ..data.patches import store_name
from ..io import atomic_write, write_json
from ..models import MODELS, build_model, model_info
from ..models.files import load_model_file, save_model_file  # noqa: F401  (re-exported for callers)
from .distributed import DistContext, distributed, wrap_loss
from .loop import (
    Progress,
    clip_gradients,
    fingerprint,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    seed_everything,
    select_device,
)

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


def write_curve(path: Path, history: list[dict]) -> None:
    keys = ["step", "train_loss", "val_psnr"]
    keys += sorted({k for row in history for k in row} - set(keys))
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in writer.fieldnames})


def open_stores(patches_dir: Path, color: str, scale: int) -> tuple[PatchStore, PatchStore]:
    name = store_name(color, scale)
    try:
        return PatchStore(patches_dir / "train" / name), PatchStore(patches_dir / "val" / name)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}. The patches stage builds the {name} stores for every run in params.yaml `runs`") from None


def compute_loss(model: nn.Module, x: torch.Tensor, target: torch.Tensor, loss_fn) -> torch.Tensor:
    """The model's own training loss when it has one (DRCN's recursive supervision), else loss_fn."""
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
        from .srgan import train_srgan

        return train_srgan(params, run_name, patches_dir, out_dir, tracking_root=tracking_root, progress=progress,
                           stop_after=stop_after)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with distributed(select_device(cfg.device)) as ctx:
        return _train_supervised(params, run_name, patches_dir, out_dir, tracking_root, progress, stop_after, ctx)


def _train_supervised(params: Params, run_name: str, patches_dir: Path, out_dir: Path, tracking_root: Path | None,
                      progress: bool, stop_after: int | None, ctx: DistContext) -> TrainResult:
    run_cfg = params.run(run_name)
    cfg, name, scale = run_cfg.train, run_cfg.model, run_cfg.scale
    cls = MODELS.get(name)
    kwargs = params.model_kwargs(name)
    train_store, val_store = open_stores(patches_dir, cls.color, scale)
    device = ctx.device

    seed_everything(params.seed)
    model = build_model(name, scale, **kwargs).to(device)
    optimizer = make_optimizer(model.parameters(), cfg)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.lr_milestones, gamma=cfg.lr_gamma)
    progress_state = Progress(len(train_store), cfg.batch_size, params.seed)
    loss_fn = LOSSES[cfg.loss]

    fp = fingerprint(cfg.model_dump(exclude={"device", "threads", "checkpoint_every", "log_every"}), kwargs,
                     params.seed, train_store.index, val_store.index["count"])
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(ckpt_path)
    if ckpt is not None and ckpt.get("fingerprint") == fp:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        progress_state.load(ckpt)
        log.info("resuming %s from step %d (%s)", name, progress_state.step, ckpt_path)
    elif ckpt is not None:
        log.info("ignoring %s: it was made with a different configuration", ckpt_path)
    start, history = progress_state.step, progress_state.history

    mlflow = None
    if tracking_root is not None and ctx.is_main:  # rank 0 alone logs (one MLflow run per training)
        import mlflow

        from ..tracking import start_training_run

        logged = {"run": run_name, "model": name, "scale": scale, "seed": params.seed, "device": str(device),
                  **{f"train.{k}": v for k, v in cfg.model_dump().items()},
                  **{f"model.{k}": v for k, v in kwargs.items()},
                  "train_patches": len(train_store), "val_patches": len(val_store), "world_size": ctx.world_size}
        tags = {"task": "super-resolution", "srstyle.run": run_name, "srstyle.fingerprint": fp}
        progress_state.run_id = start_training_run(params.tracking, tracking_root, out_dir, run_name,
                                                   progress_state.run_id, start == 0, logged, tags)

    def checkpoint(step: int) -> None:
        progress_state.step = step
        if not ctx.is_main:
            return
        save_checkpoint(ckpt_path, {
            "fingerprint": fp, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), **progress_state.state(),
        })

    model.train()
    step_loss = wrap_loss(model, lambda m, x, y: compute_loss(m, x, y, loss_fn), ctx)
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    progress_state.start_clock()
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, desc=f"train {out_dir.name}",
               disable=not progress or not ctx.is_main)
    for step in bar:
        indices = progress_state.sampler.next_indices()  # the global batch, drawn identically on every rank
        if ctx.enabled:
            indices = indices[ctx.shard(len(indices))]
        lr, hr = train_store.batch(indices, progress_state.augment if cfg.augment else None)
        lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
        loss = step_loss(model_input(lr, cls.input_kind, scale), hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model, optimizer, cfg)
        optimizer.step()
        scheduler.step()
        progress_state.accumulate(train_loss=ctx.mean(loss))
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            row = {"step": done, **progress_state.pop_means()}
            if ctx.is_main and (done % cfg.val_every == 0 or done == cfg.steps):
                row["val_psnr"] = validation_psnr(model, val_store, device)
                bar.set_postfix(loss=f"{row['train_loss']:.5f}", val_psnr=f"{row['val_psnr']:.2f}")
            history.append(row)
            if mlflow is not None:
                mlflow.log_metrics({k: v for k, v in row.items() if k != "step"}, step=done)
        if done % cfg.checkpoint_every == 0 or done == end:
            checkpoint(done)
    bar.close()
    if not ctx.is_main:  # the other ranks write nothing: rank 0 holds the same weights
        return TrainResult(end, history[-1]["train_loss"] if history else math.nan, math.nan, math.nan,
                           end * cfg.batch_size / max(progress_state.seconds, 1e-9), None)
    return finish_training(progress_state, model, val_store, out_dir, name, scale, kwargs, end, cfg.steps,
                           cfg.batch_size, mlflow)


def finish_training(state: Progress, model: nn.Module, val_store: PatchStore, out_dir: Path, name: str, scale: int,
                    kwargs: dict, end: int, total: int, batch_size: int, mlflow) -> TrainResult:
    """Write model.pt, curve.csv and train_metrics.json and close the MLflow run; or, when stopped before
    ``total`` steps (tests), only close the run: the state is already checkpointed."""
    history, run_id = state.history, state.run_id
    seconds = state.seconds
    throughput = end * batch_size / seconds if seconds > 0 else 0.0
    if end < total:
        if mlflow is not None:
            mlflow.end_run(status="KILLED")
        return TrainResult(end, history[-1]["train_loss"] if history else math.nan, math.nan, math.nan, throughput, run_id)

    val_rows = [r for r in history if "val_psnr" in r]
    result = TrainResult(
        steps=total,
        final_loss=history[-1]["train_loss"],
        best_val_psnr=max(r["val_psnr"] for r in val_rows),
        final_val_psnr=val_rows[-1]["val_psnr"],
        patches_per_s=throughput,
        run_id=run_id,
    )
    model.eval()
    save_model_file(out_dir / "model.pt", name, scale, kwargs, model, total)
    write_curve(out_dir / "curve.csv", history)
    write_json({k: round(v, 6) if isinstance(v, float) else v for k, v in result.__dict__.items() if k != "run_id"},
               out_dir / "train_metrics.json")
    if mlflow is not None:
        _log_final(mlflow, model, val_store, out_dir, name, scale, result)
        mlflow.end_run()
    return result


def _log_final(mlflow, model, val_store, out_dir, name, scale, result) -> None:
    from ..evaluate.compare import patch_strip
    from ..tracking import pip_requirements

    mlflow.log_metrics({"best_val_psnr": result.best_val_psnr, "train_patches_per_s": result.patches_per_s})
    mlflow.log_artifact(str(out_dir / "curve.csv"))
    mlflow.log_image(patch_strip(model, val_store, count=4), "val_patches_lr_bicubic_sr_hr.png")
    mlflow.pytorch.log_model(
        model.cpu(), name="model", serialization_format="pickle", pip_requirements=pip_requirements(),
        metadata={"arch": name, "scale": scale, "input": "Y (BT.601) in [0,1]" if model.color == "y" else "RGB in [0,1]"},
    )
