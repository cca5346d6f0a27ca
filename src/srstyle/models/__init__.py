"""Model registry and architectures.

The registry and the architectures (which need torch) load on first use, so torch-free code (the parameter
schema, the service) can import :mod:`srstyle.models.names` without pulling torch in.
"""

from .names import SR_ARCHITECTURES  # noqa: F401

_LAZY = ("MODELS", "as_lr_model", "build_model", "model_info")


def __getattr__(name: str):
    if name in _LAZY:
        from . import registry

        registry.load_builtins()
        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
