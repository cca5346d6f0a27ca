"""srstyle: super-resolution and neural style transfer MLOps pipeline."""
__version__ = "0.1.0"

from .logs import quiet_known_warnings as _quiet  # noqa: E402 - before any third-party import of ours

_quiet()  # only the specific, known-harmless messages listed (with reasons) in srstyle/logs.py
