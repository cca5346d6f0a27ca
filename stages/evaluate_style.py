"""DVC stage `evaluate_style`: every style method on held-out content, against Gatys; grids + metrics."""

from srstyle.config import load_params
from srstyle.data.style_data import StylePaths
from srstyle.evaluate.style import evaluate_style
from srstyle.logs import setup_logging
from srstyle.paths import project_root

if __name__ == "__main__":
    setup_logging()
    root = project_root()
    paths = StylePaths(root)
    evaluate_style(load_params(), paths, paths.eval_dir, tracking_root=root)
