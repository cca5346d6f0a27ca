"""What the DVC stages of dvc.yaml do, as library functions (stages/*.py are entry points of a few lines).

Each step takes the typed params and the project root and writes its DVC outputs; logging into MLflow
happens here too, so a stage, a test or a notebook call the same code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable


class StageUsageError(SystemExit):
    """A stage called without (or with an unknown) name: exit 2 with the names it accepts."""


def required_name(argv: list[str], what: str, known: Iterable[str], script: str) -> str:
    """The single name argument of a foreach stage (``train@<run>``...): never a silent default."""
    known = list(known)
    if len(argv) != 1 or argv[0] not in known:
        got = "no name" if not argv else f"{' '.join(argv)!r}"
        raise StageUsageError(f"usage: python {script} <{what}>; got {got}. Known {what}s (params.yaml): "
                              f"{', '.join(known) or '(none)'}")
    return argv[0]


def stage_main(step: Callable, *, name_from: str | None = None, argv: list[str] | None = None):
    """Run ``step(params, root[, name])`` the way a DVC stage does: logging, params.yaml, project root.

    ``name_from``: ``"runs"`` or ``"styles"``: the stage takes one name from that params.yaml list.
    """
    from ..config import load_params
    from ..logs import setup_logging
    from ..paths import project_root

    setup_logging()
    argv = sys.argv[1:] if argv is None else argv
    params, root = load_params(), project_root()
    if name_from is None:
        return step(params, root)
    known = params.runs if name_from == "runs" else params.style.fast.styles
    script = Path(sys.argv[0]).as_posix() if sys.argv and sys.argv[0] else "stages/<stage>.py"
    return step(params, root, required_name(argv, name_from.rstrip("s"), known, script))
