"""Logging set-up for stages and the CLI (one format, quiet third-party loggers), and the warning policy.

Warnings are not silenced wholesale: the deprecations of MLflow, Prefect, BentoML, torch... are what the next
upgrade breaks on, so they stay visible. Only the specific messages in ``KNOWN_HARMLESS`` are filtered, each
for the reason given beside it.
"""

from __future__ import annotations

import logging
import os
import warnings

# (message regex, category, module regex of the code that warns, why it is harmless)
KNOWN_HARMLESS = [
    (r"GitWildMatchPattern \('gitwildmatch'\) is deprecated", DeprecationWarning, r"pathspec(\.|$)",
     "bentoml 1.4 (and dvc) build .gitignore-style matchers with pathspec's old pattern name; pathspec still "
     "supports it and we call neither directly"),
    (r"module 'sre_(constants|parse|compile)' is deprecated", DeprecationWarning, r"",
     "great_expectations 1.x imports the stdlib's sre_* modules at import time; nothing of ours uses them"),
    (r"The `__get_pydantic_core_schema__` method of the `BaseModel` class is deprecated", DeprecationWarning, r"",
     "BentoML 1.4's IO models (_bentoml_sdk/io_models.py) call the pydantic 2.11-deprecated hook when a "
     "service is defined; works until pydantic 3, which bentoml's pin excludes"),
]


def quiet_known_warnings() -> None:
    """Filter exactly the known-harmless third-party warnings (idempotent; other warnings keep their policy)."""
    for message, category, module, _why in KNOWN_HARMLESS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("SRSTYLE_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("great_expectations", "alembic", "mlflow", "urllib3", "onnxscript", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_known_warnings()
