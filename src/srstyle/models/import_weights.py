"""Import pretrained weights from the official/public releases onto this project's modules.

Layouts:
* ``edsr``: the authors' EDSR-PyTorch code (``head.0``, ``body.N.body.{0,2}``, ``tail.0.K``, ``tail.1``,
  ``sub_mean``/``add_mean`` convs). Their networks take RGB on the 0-255 scale; ours take [0, 1]. The
  network is piecewise linear (convs, ReLU, pixel shuffle, residual scaling), so dividing every bias by 255
  gives exactly f_ours(x) = f_theirs(255 x) / 255. Their mean-shift convs are replaced by our buffers.
* ``ordered`` (SRResNet, ESPCN and any port that lists parameters in the same order as ours, such as the
  widely used ESPCN layout ``first_part.0`` / ``first_part.2`` / ``last_part.0``): parameters are paired in
  order and every shape must match.
Checkpoints wrapped as ``{"params"|"state_dict"|"model": ...}`` and ``module.`` prefixes are unwrapped.
Any mismatch refuses the import with a message naming the key.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .registry import build_model


class WeightImportError(ValueError):
    """The state dict does not fit the architecture; the message names the key."""


def load_state_dict_file(path: Path | str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightImportError(f"{path}: weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickles with code are refused by weights_only
        raise WeightImportError(f"{path}: not a plain tensor state dict ({exc})") from None
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightImportError(f"{path}: expected a dict of tensors (a state dict)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _learnable(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def map_ordered(model: nn.Module, theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours = _learnable(model.state_dict())
    src = _learnable(theirs)
    if len(src) != len(ours):
        extra = src[len(ours)][0] if len(src) > len(ours) else ours[len(src)][0]
        raise WeightImportError(
            f"the file has {len(src)} tensors, the model {len(ours)}; first without a counterpart: {extra!r}"
        )
    mapped = {}
    for (ok, ov), (tk, tv) in zip(ours, src):
        if ov.shape != tv.shape:
            raise WeightImportError(f"{tk!r} has shape {tuple(tv.shape)} but {ok!r} needs {tuple(ov.shape)}")
        mapped[ok] = tv.clone()
    return mapped


def map_edsr(model: nn.Module, theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours = model.state_dict()
    mapped = {}
    for key, value in theirs.items():
        if key.startswith(("sub_mean.", "add_mean.")):
            continue
        name = key.replace("head.0.", "head.", 1)
        if name not in ours:
            raise WeightImportError(f"{key!r} has no counterpart in EDSR(scale={model.scale}); wrong scale or config?")
        if ours[name].shape != value.shape:
            raise WeightImportError(f"{key!r} has shape {tuple(value.shape)} but {name!r} needs {tuple(ours[name].shape)}")
        mapped[name] = value / 255.0 if name.endswith(".bias") else value.clone()
    missing = [k for k in ours if k not in mapped and not k.endswith("shift")]
    if missing:
        raise WeightImportError(f"the file lacks {missing[0]!r} (and {len(missing) - 1} more)")
    return mapped


LAYOUTS = {"edsr": map_edsr, "ordered": map_ordered}


def import_weights(arch: str, scale: int, path: Path | str, layout: str | None = None, **kwargs) -> nn.Module:
    """Build ``arch`` at ``scale`` (constructor ``kwargs``) and load the weights in ``path`` onto it."""
    model = build_model(arch, scale, **kwargs)
    layout = layout or ("edsr" if arch == "edsr" else "ordered")
    if layout not in LAYOUTS:
        raise WeightImportError(f"unknown layout {layout!r}; choose from {sorted(LAYOUTS)}")
    mapped = LAYOUTS[layout](model, load_state_dict_file(path))
    model.load_state_dict({**model.state_dict(), **mapped})
    return model.eval()
