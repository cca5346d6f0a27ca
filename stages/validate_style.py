"""DVC stage `validate_style`: the SR data's Great Expectations suite over the style data; bad files are
copied to data/style/quarantine/{content,styles} with a report."""

import logging

from srstyle.config import load_params
from srstyle.data.style_data import StylePaths
from srstyle.data.validate import validate
from srstyle.logs import setup_logging
from srstyle.paths import project_root

if __name__ == "__main__":
    setup_logging()
    params = load_params()
    paths = StylePaths(project_root())
    min_sides = {"content": max(params.style.fast.image_size, params.style.meta.image_size), "styles": 64}
    for kind, min_side in min_sides.items():
        summary = validate(paths.raw(kind), paths.validated(kind), paths.quarantine(kind), params.validate_, min_side=min_side)
        logging.getLogger("validate_style").info(
            "%s: %d/%d images valid, %d quarantined (report: %s)", kind, summary["valid"], summary["total"],
            summary["quarantined"], paths.quarantine(kind) / "report.json",
        )
