"""Where each stage reads and writes, relative to the project root (one place to change them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_EXP_TEMP_MARKER = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep


def project_root(start: Path | str | None = None) -> Path:
    """The project root: ``SRSTYLE_ROOT``, else the working directory (where DVC runs stages).

    ``dvc exp run --temp/--queue`` runs stages in a copy under ``.dvc/tmp/exps/...``; the real project
    root is the part of the path before that, so state kept outside DVC (the MLflow store) stays in one
    place instead of a throw-away copy.
    """
    root = Path(os.environ.get("SRSTYLE_ROOT") or start or Path.cwd()).resolve()
    text = str(root) + os.sep
    if _EXP_TEMP_MARKER in text:
        root = Path(text.split(_EXP_TEMP_MARKER, 1)[0])
    return root


@dataclass(frozen=True)
class DataPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def downloads(self) -> Path:
        return self.data / "downloads"

    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def validated(self) -> Path:
        return self.data / "validated"

    @property
    def quarantine(self) -> Path:
        return self.data / "quarantine"

    @property
    def patches(self) -> Path:
        return self.data / "patches"

    def model_dir(self, run_name: str) -> Path:
        return self.data / "models" / run_name

    def eval_dir(self, run_name: str) -> Path:
        return self.data / "eval" / run_name

    def onnx_dir(self, run_name: str) -> Path:
        return self.data / "onnx" / run_name

