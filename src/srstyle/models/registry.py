"""A name -> class registry, so a model is added by one file and one decorator (BasicSR style).

Each registered class declares how it is fed:

* ``input_kind``: ``"lr"`` (the low-resolution image) or ``"bicubic"`` (LR upscaled by bicubic first);
* ``color``: ``"y"`` (BT.601 luma, one channel) or ``"rgb"``.

Its constructor takes ``scale`` plus the keyword arguments of its block under ``models:`` in params.yaml.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn


class Registry:
    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._items: dict[str, type] = {}
        self._loader = loader  # imports the built-in entries on first lookup

    def _load(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None
            loader()

    def register(self, name: str) -> Callable[[type], type]:
        def decorator(cls: type) -> type:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            for attr in ("input_kind", "color"):
                if not hasattr(cls, attr):
                    raise TypeError(f"{self.kind} {name!r} must define the class attribute {attr!r}")
            self._items[name] = cls
            cls.registry_name = name
            return cls

        return decorator

    def get(self, name: str) -> type:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {sorted(self._items)}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)


def load_builtins() -> None:
    """Register the built-in SR architectures (one module each under ``models/sr``)."""
    import importlib

    importlib.import_module("srstyle.models.sr")


MODELS = Registry("model", loader=load_builtins)


def build_model(name: str, scale: int, **kwargs: Any) -> nn.Module:
    cls = MODELS.get(name)
    try:
        return cls(scale=scale, **kwargs)
    except TypeError as exc:
        raise TypeError(f"models.{name} in params.yaml: {exc}") from None


def model_info(name: str) -> dict[str, str]:
    cls = MODELS.get(name)
    return {"name": name, "input_kind": cls.input_kind, "color": cls.color}


class LRInput(nn.Module):
    """Wrap a model that expects a bicubic-upscaled input so it takes the LR image, like every other model.

    Training, inference and ONNX export all upscale with this one definition (PyTorch bicubic), so the model
    sees the same interpolation everywhere; the exported graph contains the Resize and takes LR directly.
    """

    input_kind = "lr"

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.scale, self.color = model.scale, model.color
        self.registry_name = getattr(model, "registry_name", type(model).__name__)

    def forward(self, x):
        import torch.nn.functional as F

        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False).clamp(0, 1)
        return self.model(up)


def as_lr_model(model: nn.Module) -> nn.Module:
    return LRInput(model) if getattr(model, "input_kind", "lr") == "bicubic" else model
