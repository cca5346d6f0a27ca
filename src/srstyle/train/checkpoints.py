"""Checkpoint files: durable atomic writes, and a corrupt file set aside instead of aborting a training.

``last.pt`` is written to a temporary file, fsynced, renamed into place and the folder fsynced, so a crash
or power loss leaves either the old or the new checkpoint, never a torn one. The checkpoint it replaces is
kept as ``previous.pt``: if ``last.pt`` is unreadable anyway (a disk error, a copy cut short) it is renamed
to ``last.pt.corrupt[-N]`` with a warning and training resumes from ``previous.pt``, or starts afresh.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory descriptors (Windows): the rename is all we can do
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_save(obj: dict, path: Path) -> None:
    """torch.save to ``path`` atomically and durably (temp file + fsync + rename + fsync of the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def previous_path(path: Path) -> Path:
    return path.with_name("previous.pt")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``last.pt``; the one it replaces becomes ``previous.pt`` (the fallback if ``last.pt`` breaks)."""
    path = Path(path)
    if path.is_file():
        os.replace(path, previous_path(path))
    durable_save(state, path)


def _set_aside(path: Path) -> Path:
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{n}")
        n += 1
    os.replace(path, target)
    _fsync_dir(path.parent)
    return target


def read_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``; None if absent; a corrupt file is renamed aside (never deleted)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not a checkpoint dict")
        return state
    except Exception as exc:  # noqa: BLE001 - any unreadable file is set aside the same way
        aside = _set_aside(path)
        log.warning("checkpoint %s is unreadable (%s: %s); moved to %s and not used", path, type(exc).__name__,
                    str(exc)[:200], aside.name)
        return None


def load_checkpoint(path: Path) -> dict | None:
    """``last.pt``, else ``previous.pt`` when ``last.pt`` is missing or corrupt, else None (start afresh)."""
    path = Path(path)
    state = read_checkpoint(path)
    if state is None:
        prev = read_checkpoint(previous_path(path))
        if prev is not None:
            log.warning("resuming from %s (step %s)", previous_path(path), prev.get("step"))
        return prev
    return state
