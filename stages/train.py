"""DVC stage `train`: train params.train.model at params.train.scale -> data/models/<model>_x<scale>."""

import logging

from srstyle.config import load_params
from srstyle.logs import setup_logging
from srstyle.paths import DataPaths, project_root, run_name
from srstyle.train.sr import train_sr

if __name__ == "__main__":
    setup_logging()
    params = load_params()
    root = project_root()
    paths = DataPaths(root)
    out = paths.model_dir(run_name(params.train.model, params.train.scale))
    result = train_sr(params, paths.patches, out, tracking_root=root)
    logging.getLogger("train").info("done: %s", result)
