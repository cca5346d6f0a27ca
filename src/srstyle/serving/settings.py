"""The service's settings: params.yaml ``serving:`` and ``engine:`` (``SRSTYLE_PARAMS`` names the file)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..config import ConfigError, EngineConfig, ServingConfig, load_params

log = logging.getLogger(__name__)


def params_path() -> Path:
    return Path(os.environ.get("SRSTYLE_PARAMS", "params.yaml"))


def load_settings() -> tuple[ServingConfig, EngineConfig]:
    path = params_path()
    if path.is_file():
        try:
            params = load_params(path)
            return params.serving, params.engine
        except ConfigError as exc:
            log.warning("%s: %s; serving with default settings", path, exc)
    return ServingConfig(), EngineConfig()


def serving_engine(serving: ServingConfig, engine: EngineConfig) -> EngineConfig:
    """The engine settings the service runs models with: intra-op threads split between the worker
    processes (``serving.threads``, else cores / workers) and no spinning, since request threads that decode
    and encode share the cores with inference (spinning ORT threads would steal their time)."""
    cores = os.cpu_count() or 1
    threads = serving.threads or max(1, cores // serving.workers)
    return engine.model_copy(update={"intra_op_threads": threads, "allow_spinning": False})
