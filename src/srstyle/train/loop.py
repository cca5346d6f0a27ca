"""Utilities every trainer shares: device choice, seeding, and exactly-resumable checkpoints."""

from __future__ import annotations

import hashlib
import time
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


class Progress:
    """Everything besides the networks and optimisers that an exactly resumed training must restore:
    the batch sampler, the augmentation and torch RNGs, the logged history, the running means since the
    last logged row, the MLflow run id and the training time summed over sessions."""

    def __init__(self, n_patches: int, batch_size: int, seed: int):
        from ..data.datasets import BatchSampler

        self.sampler = BatchSampler(n_patches, batch_size, seed)
        self.augment = np.random.default_rng(seed + 1)
        self.step = 0
        self.history: list[dict] = []
        self.run_id: str | None = None
        self.running: dict[str, list[float]] = {}
        self._seconds_before = 0.0
        self._t0 = time.perf_counter()

    def start_clock(self) -> None:
        self._t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self._seconds_before + time.perf_counter() - self._t0

    def accumulate(self, **values: float) -> None:
        for key, value in values.items():
            total = self.running.setdefault(key, [0.0, 0])
            total[0] += value
            total[1] += 1

    def pop_means(self) -> dict[str, float]:
        means = {k: s / n for k, (s, n) in self.running.items() if n}
        self.running = {}
        return means

    def state(self) -> dict:
        return {
            "step": self.step, "run_id": self.run_id or "",
            "sampler": json.dumps(self.sampler.state()), "augment": json.dumps(self.augment.bit_generator.state),
            "torch_rng": torch.get_rng_state(), "history": json.dumps(self.history),
            "running": json.dumps(self.running), "seconds": self.seconds,
        }

    def load(self, ckpt: dict) -> None:
        self.step = int(ckpt["step"])
        self.run_id = ckpt.get("run_id") or None
        self.sampler.load_state(json.loads(ckpt["sampler"]))
        self.augment.bit_generator.state = json.loads(ckpt["augment"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.history = json.loads(ckpt["history"])
        running = json.loads(ckpt["running"])
        self.running = running if isinstance(running, dict) else {}  # older checkpoints stored a pair
        self._seconds_before = float(ckpt.get("seconds", 0.0))
