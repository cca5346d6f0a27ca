"""DVC stage `patches`: aligned LR/HR patch stores per split, colour mode and scale in data/patches."""

import logging

from srstyle.config import load_params
from srstyle.data.patches import make_patches
from srstyle.logs import setup_logging
from srstyle.models import MODELS
from srstyle.paths import DataPaths, project_root

if __name__ == "__main__":
    setup_logging()
    params = load_params()
    paths = DataPaths(project_root())
    needed = [params.run(name).store(MODELS.get(r.model).color) for name, r in params.runs.items()]
    needed += [(color, scale) for color, scale, _ in needed]  # default size too: int8 calibration reads it
    counts = make_patches(paths.validated, paths.raw, paths.patches, params.patches, params.seed,
                          params.validate_.max_pixels, extra_stores=needed, formats=params.validate_.allowed_formats)
    logging.getLogger("patches").info("patch stores: %s", counts)
