"""Warning policy: imports run clean under -W error::DeprecationWarning with only the listed, known-harmless
messages filtered (srstyle/logs.py); nothing silences deprecations wholesale."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["srstyle.cli", "srstyle.serving.service"])
def test_import_is_clean_under_deprecation_errors(module, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-W", "error::FutureWarning", "-c",
                           f"import {module}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_setup_logging_keeps_other_deprecations_visible():
    from srstyle.logs import KNOWN_HARMLESS, setup_logging

    setup_logging()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        setup_logging()  # installs its filters again, in front of "default"
        warnings.warn("mlflow.something is deprecated", DeprecationWarning)
        warnings.warn("a future change", FutureWarning)
    assert {type(w.message) for w in caught} == {DeprecationWarning, FutureWarning}
    assert all(len(entry) == 4 and len(entry[3]) > 20 for entry in KNOWN_HARMLESS)  # each with its reason
    text = (REPO / "src/srstyle/logs.py").read_text() + (REPO / "pyproject.toml").read_text()
    assert 'category=DeprecationWarning)' not in text.replace("message=message, category=category", "")
    assert "ignore::DeprecationWarning" not in text
