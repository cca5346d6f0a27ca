"""DVC stage `validate`: Great Expectations suite over data/raw; bad files copied to data/quarantine."""

import logging

from srstyle.config import load_params
from srstyle.data.validate import validate
from srstyle.logs import setup_logging
from srstyle.paths import DataPaths, project_root

if __name__ == "__main__":
    setup_logging()
    params = load_params()
    paths = DataPaths(project_root())
    summary = validate(paths.raw, paths.validated, paths.quarantine, params.validate_, min_side=params.patches.hr_size)
    logging.getLogger("validate").info(
        "%d/%d images valid, %d quarantined (report: %s)",
        summary["valid"], summary["total"], summary["quarantined"], paths.quarantine / "report.json",
    )
