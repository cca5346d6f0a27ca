"""One flow run per workspace at a time, and parameters that belong to one run.

Two flow runs in one project folder (the weekly schedule and an on-demand run) would rewrite the same
params.yaml and fight over DVC's repository lock, so one could train with the other's parameters. A flow run
holds ``.dvc/tmp/srstyle-flow.lock`` (an OS file lock: released when the process dies) from before it writes
params.yaml until it has restored it; a second run waits for it. The deployments add a concurrency limit of
1 on the server side (pipelines/deployments.py), so queued runs wait there first.

Run parameters (``models``, ``scale``, ``overrides``) are written into params.yaml for that run only, the way
`dvc exp run -S` would, and the file is put back byte for byte at the end, so they never leak into later
scheduled runs; dvc.lock records what the run used.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # the rule config.py applies to run, model and style names
LOCK_FILE = Path(".dvc") / "tmp" / "srstyle-flow.lock"


class WorkspaceBusy(TimeoutError):
    pass


@contextlib.contextmanager
def workspace_lock(root: Path, timeout: float | None = None, on_wait: Callable[[str], None] = print,
                   poll: float = 0.5) -> Iterator[Path]:
    """Hold the project's flow lock; wait (``timeout`` seconds at most, None = forever) while another run
    holds it."""
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        t0, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    f.seek(0)
                    on_wait(f"another flow run holds {path} ({f.read().strip() or 'unknown'}): waiting for it")
                    told = True
                if timeout is not None and time.monotonic() - t0 > timeout:
                    raise WorkspaceBusy(f"{path} still held after {timeout:g} s") from None
                time.sleep(poll)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield path
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_name(value: str, parameter: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ValueError(f"retrain parameter `{parameter}`: {value!r} is not a valid name: use letters, digits, "
                         "'_', '.' and '-' only (names become DVC stage names and command arguments)")
    return value


def params_changes(root: Path, scale: int | None, models: list[str] | None,
                   overrides: dict[str, Any] | None) -> tuple[dict, str | None]:
    """The changes the run parameters make to params.yaml and the new text (None: nothing changes).

    Validated against the schema before anything is written: a bad key or value fails here, naming it.
    """
    import yaml as pyyaml
    from ruamel.yaml import YAML

    from srstyle.config import parse_params

    for model in models or []:
        check_name(model, "models")
    if scale is not None and (not isinstance(scale, int) or isinstance(scale, bool) or scale < 1):
        raise ValueError(f"retrain parameter `scale`: {scale!r} is not a positive integer")
    for key in overrides or {}:
        for part in str(key).split("."):
            check_name(part, f"overrides ({key!r})")
    yaml = YAML()  # round-trip: comments and key order of params.yaml survive
    yaml.width = 4096
    path = root / "params.yaml"
    doc = yaml.load(path.read_text(encoding="utf-8"))
    changes: dict[str, Any] = {}
    if scale is not None or models:
        current = {name: (spec["model"], spec["scale"]) for name, spec in doc["runs"].items()}
        wanted_models = list(models) if models else list(dict.fromkeys(m for m, _ in current.values()))
        wanted_scales = [scale] if scale is not None else sorted({s for _, s in current.values()})
        runs = {f"{m}_x{s}": {"model": m, "scale": s} for m in wanted_models for s in wanted_scales}
        if runs != {k: dict(v) for k, v in doc["runs"].items()}:
            doc["runs"].clear()
            doc["runs"].update(runs)
            changes["runs"] = runs
    for key, value in (overrides or {}).items():
        node = doc
        parts = key.split(".")
        for part in parts[:-1]:
            if part not in node:
                node[part] = {}
            node = node[part]
        if node.get(parts[-1]) != value:
            node[parts[-1]] = value
            changes[key] = value
    if not changes:
        return {}, None
    buf = io.StringIO()
    yaml.dump(doc, buf)
    parse_params(pyyaml.safe_load(buf.getvalue()), path)
    return changes, buf.getvalue()


@contextlib.contextmanager
def run_params(root: Path, scale: int | None, models: list[str] | None,
               overrides: dict[str, Any] | None) -> Iterator[dict]:
    """params.yaml with the run's parameters for the duration of the block, restored afterwards (also on
    failure or cancellation). Yields the changes."""
    from srstyle.io import atomic_write

    path = root / "params.yaml"
    changes, text = params_changes(root, scale, models, overrides)
    if text is None:
        yield {}
        return
    original = path.read_bytes()
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    try:
        yield changes
    finally:
        with atomic_write(path, "wb") as f:
            f.write(original)
