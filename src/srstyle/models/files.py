"""Model files written by the trainer: a plain dict of tensors and settings, never a pickled module.

Kept beside the architectures (not in ``train/``) so that loading a model never imports training code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .registry import build_model, model_info


def save_model_file(path: Path, name: str, scale: int, kwargs: dict, model: nn.Module, step: int) -> None:
    """The trained model as a plain dict (loadable with ``torch.load(..., weights_only=True)``), written atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"arch": name, "scale": scale, "kwargs": kwargs, "info": model_info(name), "step": step, "state_dict": state}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_model_file(path: Path | str, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the architecture from a trainer ``model.pt`` and load its weights (``weights_only``)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(payload["arch"], payload["scale"], **payload["kwargs"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
