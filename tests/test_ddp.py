"""torchrun + DistributedDataParallel on CPU (gloo): two processes follow single-process training on the same
global batch, rank 0 alone writes outputs and one MLflow run, and checkpoints resume on another world size."""

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from srstyle.config import load_params
from srstyle.data.patches import make_patches
from srstyle.train.sr import load_model_file, train_sr
from tests.helpers import make_corpus

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5  # float32 summation order differs (two half-batch means averaged vs one mean); nothing else

PARAMS = {
    "seed": 3,
    "patches": {"scales": [3], "hr_size": 24, "stride": 12},
    "runs": {"espcn_x3": {"model": "espcn", "scale": 3}},
    "train": {"steps": 12, "batch_size": 8, "lr": 2e-3, "lr_milestones": [8], "checkpoint_every": 4,
              "val_every": 6, "log_every": 3, "threads": 1, "device": "cpu",
              "precision": "fp32"},  # TOL is float32's: auto may pick bf16 on a CPU that runs it fast
    "models": {"espcn": {"channels": [8, 4]}},
    "tracking": {"experiment": "ddp"},
}


def _project(root: Path) -> Path:
    raw, validated = make_corpus(root / "data")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    params = load_params(root / "params.yaml")
    make_patches(validated, raw, root / "data/patches", params.patches, 0, 10**7, progress=False)
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Single-process training of the same run (no MLflow), and a patch store to copy."""
    root = _project(tmp_path_factory.mktemp("single"))
    params = load_params(root / "params.yaml")
    result = train_sr(params, "espcn_x3", root / "data/patches", root / "data/models/espcn_x3", progress=False)
    return root, result


def _torchrun(args, cwd, nproc=2):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SRSTYLE_ROOT", "RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    print(f"torchrun x{nproc}: {time.perf_counter() - t0:.1f} s")
    return proc


def _max_diff(a: Path, b: Path) -> float:
    sa, sb = load_model_file(a).state_dict(), load_model_file(b).state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def _runs(root: Path) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    try:
        return mlflow.search_runs(experiment_names=["ddp"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)


def test_two_processes_match_single_process_and_log_one_run(reference, tmp_path):
    ref_root, ref = reference
    root = _project(tmp_path)
    # The DVC stage itself, launched by torchrun: the same command `dvc repro` runs, with a launcher in front.
    _torchrun([str(REPO / "stages" / "train.py"), "espcn_x3"], cwd=root)
    out = root / "data/models/espcn_x3"
    diff = _max_diff(ref_root / "data/models/espcn_x3/model.pt", out / "model.pt")
    print(f"DDP x2 vs single process, max |weight diff| = {diff:.3e}")
    assert diff < TOL
    ref_curve = [l.split(",") for l in (ref_root / "data/models/espcn_x3/curve.csv").read_text().splitlines()[1:]]
    curve = [l.split(",") for l in (out / "curve.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in curve] == [r[0] for r in ref_curve] == ["3", "6", "9", "12"]
    for a, b in zip(ref_curve, curve):  # logged loss = the global batch's loss, averaged over ranks
        assert float(a[1]) == pytest.approx(float(b[1]), rel=1e-4)
    runs = _runs(root)
    assert len(runs) == 1, [r.info.run_id for r in runs]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.batch_size"] == "8"
    assert run.data.params["world_size"] == "2"  # the global batch of 8 was split 4 + 4
    assert float(run.data.metrics["best_val_psnr"]) == pytest.approx(ref.best_val_psnr, abs=1e-3)
    # Rank 0 wrote each output exactly once, and nothing else appeared (no per-rank files).
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "curve.csv", "mlflow_run.json", "model.pt",
                                                      "train_metrics.json"]


def test_checkpoint_from_two_processes_resumes_in_one(reference, tmp_path):
    ref_root, _ = reference
    root = _project(tmp_path)
    _torchrun([str(REPO / "tests" / "ddp_worker.py"), str(root), "espcn_x3", "5"], cwd=root)
    out = root / "data/models/espcn_x3"
    ckpt = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert ckpt["step"] == 5 and not any(k.startswith("module.") for k in ckpt["modules"]["model"])  # unwrapped state
    assert not (out / "model.pt").exists()
    params = load_params(root / "params.yaml")
    resumed = train_sr(params, "espcn_x3", root / "data/patches", out, tracking_root=root, progress=False)
    assert resumed.steps == 12
    diff = _max_diff(ref_root / "data/models/espcn_x3/model.pt", out / "model.pt")
    print(f"2-process checkpoint resumed in 1 process vs single process, max |weight diff| = {diff:.3e}")
    assert diff < TOL
    runs = _runs(root)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the interrupted run was re-opened, not duplicated


def test_batch_must_split_evenly_across_ranks():
    from srstyle.train.distributed import DistContext

    assert DistContext(rank=1, world_size=2).shard(8) == slice(4, 8)
    with pytest.raises(ValueError, match="multiple of the world size"):
        DistContext(rank=0, world_size=3).shard(8)
