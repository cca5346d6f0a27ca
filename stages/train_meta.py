"""DVC stage `train_meta`: the Meta-Network (style.meta) on the training styles; held-out styles unseen."""

from srstyle.config import load_params
from srstyle.data.style_data import StylePaths
from srstyle.logs import setup_logging
from srstyle.paths import project_root
from srstyle.train.style import train_meta

if __name__ == "__main__":
    setup_logging()
    root = project_root()
    paths = StylePaths(root)
    train_meta(load_params(), paths, paths.meta_model_dir, tracking_root=root)
