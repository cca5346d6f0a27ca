"""DVC stage `promote_style`: register each fast style net (style-<name>) and the meta network (style-meta)
in the MLflow registry and move `champion` when a challenger's held-out style-loss ratio (evaluate_style,
lower is better) beats it by promote.style_margin, only in runs that ship (never inside `dvc exp run`)."""

from srstyle.config import load_params
from srstyle.data.style_data import StylePaths
from srstyle.logs import setup_logging
from srstyle.model_registry import promote_style
from srstyle.paths import project_root

if __name__ == "__main__":
    setup_logging()
    root = project_root()
    promote_style(load_params(), StylePaths(root), root)
