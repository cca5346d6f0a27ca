"""Utilities every trainer shares: device choice, seeding, and exactly-resumable checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fingerprint(*parts: Any) -> str:
    """Stable hash of the things that make a checkpoint resumable (config, data)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a crash while saving leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def cpu_rng_state() -> torch.Tensor:
    return torch.get_rng_state()


def restore_cpu_rng_state(state: torch.Tensor) -> None:
    torch.set_rng_state(state)


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """Adam (betas from params) or SGD with momentum, as the recipe says."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def clip_gradients(model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg) -> None:
    """Global-norm clipping, or VDSR's adjustable clipping: each gradient to [-c/lr, c/lr]."""
    if not cfg.grad_clip:
        return
    if cfg.grad_clip_adjustable:
        lr = optimizer.param_groups[0]["lr"]
        torch.nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip / lr)
    else:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
