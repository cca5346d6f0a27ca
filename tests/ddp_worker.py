"""torchrun entry for tests/test_ddp.py: train_sr from a project folder, optionally stopping early.

Usage: torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py <project> <run> [stop_after]
"""

import sys
from pathlib import Path

from srstyle.config import load_params
from srstyle.paths import DataPaths
from srstyle.train.sr import train_sr

if __name__ == "__main__":
    root, run = Path(sys.argv[1]), sys.argv[2]
    stop_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
    paths = DataPaths(root)
    train_sr(load_params(root / "params.yaml"), run, paths.patches, paths.model_dir(run), tracking_root=root,
             progress=False, stop_after=stop_after)
