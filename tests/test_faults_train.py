"""Faults around training (issue 14): injected names, durable checkpoints, a corrupt checkpoint, kill -9."""

import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from srstyle.config import ConfigError, load_params, parse_params
from srstyle.data.patches import make_patches
from srstyle.train import checkpoints
from srstyle.train.sr import load_model_file, train_sr
from tests.helpers import make_corpus

REPO = Path(__file__).resolve().parents[1]

RAW = {
    "seed": 5,
    "patches": {"scales": [3], "modes": ["y"], "hr_size": 24, "stride": 12},
    "runs": {"espcn_x3": {"model": "espcn", "scale": 3}},
    "train": {"steps": 16, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 4, "val_every": 4, "log_every": 2,
              "warmup_steps": 2, "threads": 1, "device": "cpu"},
    "models": {"espcn": {"channels": [8, 4]}},
}


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    raw, validated = make_corpus(root)
    make_patches(validated, raw, root / "patches", parse_params(RAW).patches, seed=0, max_pixels=10**7, progress=False)
    return root / "patches"


def _same_weights(a: Path, b: Path) -> None:
    sa, sb = load_model_file(a).state_dict(), load_model_file(b).state_dict()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# --- names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, field", [
    ({"runs": {"x;touch${IFS}pwned": {"model": "espcn", "scale": 3}}}, "runs.x;touch${IFS}pwned"),
    ({"runs": {"ok": {"model": "espcn;id", "scale": 3}}}, "runs.ok.model"),
    ({"runs": {"ok": {"model": "nosuchnet", "scale": 3}}}, "runs.ok.model"),
    ({"recipes": {"espcn$(id)": {"lr": 1.0}}}, "recipes.espcn$(id)"),
    ({"models": {"../espcn": {}}}, "models.../espcn"),
    ({"style": {"fast": {"styles": ["starry_night;rm -rf ~"]}}}, "style.fast.styles"),
    ({"style": {"fast": {"styles": ["not_a_painting"]}}}, "style.fast.styles"),
])
def test_injected_or_unknown_names_are_refused_naming_the_field(tmp_path, raw, field):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert field in str(err.value) and str(path) in str(err.value)


def test_safe_names_still_load():
    params = parse_params({"runs": {"edsr_x4.v2-a": {"model": "edsr", "scale": 4}},
                           "style": {"styles": {"source": "local", "local_dir": "/x"}, "fast": {"styles": ["my_style"]}}})
    assert params.run("edsr_x4.v2-a").model == "edsr"


# --- checkpoints -----------------------------------------------------------------------------------------


def test_checkpoint_write_fsyncs_file_and_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    path = tmp_path / "checkpoints" / "last.pt"
    checkpoints.save_checkpoint(path, {"step": 1})
    assert synced == ["file", "dir"]
    assert torch.load(path, weights_only=True) == {"step": 1} and not list(path.parent.glob("*.tmp"))
    checkpoints.save_checkpoint(path, {"step": 2})  # the one replaced is kept as the fallback
    assert torch.load(path.with_name("previous.pt"), weights_only=True) == {"step": 1}


def test_corrupt_last_checkpoint_is_set_aside_and_training_resumes_from_the_previous(patches, tmp_path, caplog):
    params = parse_params(RAW)
    train_sr(params, "espcn_x3", patches, tmp_path / "a", progress=False)
    train_sr(params, "espcn_x3", patches, tmp_path / "b", progress=False, stop_after=8)  # checkpoints at 4 and 8
    last = tmp_path / "b" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # a copy cut short
    with caplog.at_level(logging.WARNING):
        resumed = train_sr(params, "espcn_x3", patches, tmp_path / "b", progress=False)
    assert "unreadable" in caplog.text and "previous.pt" in caplog.text
    assert (tmp_path / "b" / "checkpoints" / "last.pt.corrupt").stat().st_size == 100  # kept, not deleted
    assert resumed.steps == 16
    _same_weights(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")


def test_corrupt_checkpoint_without_fallback_starts_afresh(patches, tmp_path, caplog):
    params = parse_params(RAW)
    out = tmp_path / "m"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        result = train_sr(params, "espcn_x3", patches, out, progress=False)
    assert result.steps == 16 and "unreadable" in caplog.text
    assert (out / "checkpoints" / "last.pt.corrupt").read_bytes() == b"not a checkpoint"
    train_sr(params, "espcn_x3", patches, tmp_path / "ref", progress=False)
    _same_weights(tmp_path / "ref" / "model.pt", out / "model.pt")


# --- kill -9 ---------------------------------------------------------------------------------------------


WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from srstyle.config import load_params
    from srstyle.train.sr import train_sr
    root = Path(sys.argv[1])
    train_sr(load_params(root / "params.yaml"), "espcn_x3", root / "patches", root / "model", progress=False)
""")


@pytest.mark.integration  # subprocess training killed with SIGKILL: ~12 s, kept out of the unit tier
def test_sigkill_during_training_then_rerun_matches_an_uninterrupted_run(patches, tmp_path):
    raw = {**RAW, "train": {**RAW["train"], "steps": 3000, "checkpoint_every": 25, "val_every": 500, "log_every": 25}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "patches").symlink_to(patches)
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(tmp_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = tmp_path / "model" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # mid-training, between checkpoints or during a write
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (tmp_path / "model" / "model.pt").exists()

    params = load_params(tmp_path / "params.yaml")
    resumed = train_sr(params, "espcn_x3", tmp_path / "patches", tmp_path / "model", progress=False)
    straight = train_sr(params, "espcn_x3", tmp_path / "patches", tmp_path / "straight", progress=False)
    assert resumed.steps == straight.steps == 3000
    _same_weights(tmp_path / "straight" / "model.pt", tmp_path / "model" / "model.pt")
    assert (tmp_path / "straight" / "curve.csv").read_text() == (tmp_path / "model" / "curve.csv").read_text()
