"""DVC stage `train@<run>`: train runs.<run> from params.yaml -> data/models/<run>."""

import logging
import sys

from srstyle.config import load_params
from srstyle.logs import setup_logging
from srstyle.paths import DataPaths, project_root
from srstyle.train.sr import train_sr

if __name__ == "__main__":
    setup_logging()
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/train.py <run name from params.yaml runs>")
    run = sys.argv[1]
    params = load_params()
    root = project_root()
    paths = DataPaths(root)
    result = train_sr(params, run, paths.patches, paths.model_dir(run), tracking_root=root)
    logging.getLogger("train").info("done: %s", result)
