"""Model registry and architectures. Importing this package registers every built-in model."""

from .registry import MODELS, as_lr_model, build_model, model_info  # noqa: F401
from . import sr  # noqa: F401  (registers the SR architectures)
