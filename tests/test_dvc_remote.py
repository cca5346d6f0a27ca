"""A DVC remote on a local directory: `dvc push`, lose the cache and the outputs, `dvc pull` restores them."""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import make_tiny_project

DVC = str(Path(sys.executable).parent / "dvc")


def _dvc(*args, cwd):
    proc = subprocess.run([DVC, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"dvc {args}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_push_then_pull_restores_outputs(tmp_path):
    root = make_tiny_project(tmp_path / "proj")
    _dvc("repro", "fetch", cwd=root)
    before = _digest(root / "data/raw")
    assert len(before) > 3
    # A relative path keeps .dvc/config valid wherever the clone lives; DVC stores it relative to .dvc/.
    _dvc("remote", "add", "-d", "shared", "../dvc-remote", cwd=root)
    assert "url = ../../dvc-remote" in (root / ".dvc/config").read_text()
    assert "new:" in _dvc("status", "-c", "fetch", cwd=root)  # not pushed yet
    _dvc("push", cwd=root)
    assert any((tmp_path / "dvc-remote").rglob("*"))

    shutil.rmtree(root / "data/raw")
    shutil.rmtree(root / ".dvc/cache")
    assert "not in cache" in _dvc("status", "fetch", cwd=root) and not (root / "data/raw").exists()
    _dvc("pull", "fetch", cwd=root)  # the stages that ran (a full pipeline: plain `dvc pull`)
    assert _digest(root / "data/raw") == before
    assert "up to date" in _dvc("status", "fetch", cwd=root)
    assert "in sync" in _dvc("status", "-c", "fetch", cwd=root)  # local cache and remote agree
    assert "Data and pipelines are up to date" in _dvc("repro", "fetch", cwd=root)  # nothing to recompute
