"""DVC stage `train_style@<style>`: Johnson's fast style network for one painting (style.fast)."""

import sys

from srstyle.config import load_params
from srstyle.data.style_data import StylePaths
from srstyle.logs import setup_logging
from srstyle.paths import project_root
from srstyle.train.style import train_fast_style

if __name__ == "__main__":
    setup_logging()
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/train_style.py <style name from style.fast.styles>")
    style, root = sys.argv[1], project_root()
    paths = StylePaths(root)
    train_fast_style(load_params(), style, paths, paths.fast_model_dir(style), tracking_root=root)
