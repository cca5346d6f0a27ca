"""DVC stage `fetch_style`: content photos and style paintings -> data/style/raw/{content,styles}."""

from srstyle.config import load_params
from srstyle.data.fetch import stage_outputs
from srstyle.data.style_data import StylePaths, fetch_style_data
from srstyle.logs import setup_logging
from srstyle.paths import project_root

if __name__ == "__main__":
    setup_logging()
    root = project_root()
    fetch_style_data(load_params().style, StylePaths(root), protected=stage_outputs(root))
