"""DVC stage `fetch`: raw images of the configured source -> data/raw/{train,val} + manifest.json."""

from srstyle.config import load_params
from srstyle.data.fetch import fetch, stage_outputs
from srstyle.logs import setup_logging
from srstyle.paths import DataPaths, project_root

if __name__ == "__main__":
    setup_logging()
    params = load_params()
    paths = DataPaths(project_root())
    fetch(params.data, paths.raw, paths.downloads, protected=stage_outputs(paths.root))
