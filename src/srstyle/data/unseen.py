"""Photos no model here trains, validates or tunes on, shipped inside dependencies (so they work offline):
scikit-learn's ``china.jpg`` and ``flower.jpg`` (427 x 640) and matplotlib's ``grace_hopper.jpg`` (600 x 512).

The evaluate stage reports each SR model's gain over bicubic on them beside the validation photos' (a model
picked by validation PSNR can flatter those), and the export stage scores every precision variant on them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)


def unseen_photos() -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB) of each photo whose package is installed; a missing package is logged, not fatal."""
    photos = []
    try:
        from sklearn.datasets import load_sample_image

        photos += [(name, np.ascontiguousarray(load_sample_image(name), dtype=np.uint8)) for name in SKLEARN_PHOTOS]
    except ImportError:
        log.warning("scikit-learn is not installed: its unseen photos (%s) are left out", ", ".join(SKLEARN_PHOTOS))
    try:
        import matplotlib
        from PIL import Image

        root = Path(matplotlib.get_data_path()) / "sample_data"
        for name in MATPLOTLIB_PHOTOS:
            with Image.open(root / name) as img:
                photos.append((name, np.ascontiguousarray(img.convert("RGB"), dtype=np.uint8)))
    except (ImportError, FileNotFoundError) as exc:
        log.warning("matplotlib's sample photos (%s) are left out: %s", ", ".join(MATPLOTLIB_PHOTOS), exc)
    return photos
