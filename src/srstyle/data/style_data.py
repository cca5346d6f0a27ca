"""Data of the style-transfer half: content photos (embedded / COCO 2014 / local) and style paintings
(embedded Van Gogh set / a WikiArt folder / the painter-by-numbers archive the user downloaded).

Both go through the same fetch -> validate path as the SR data: ``data/style/raw/{content,styles}/{train,val}``
with a manifest, then the Great Expectations suite with quarantine. For styles, ``val`` holds the paintings
kept out of meta-network training (``style.styles.held_out``).
"""

from __future__ import annotations

import logging
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image

from ..config import DataConfig, StyleConfig, StyleSetConfig
from ..io import load_rgb, read_json
from ..painting_frame import trim_frame
from .archive import extract_once
from .fetch import FetchError, fetch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StylePaths:
    root: Path

    @property
    def base(self) -> Path:
        return self.root / "data" / "style"

    def raw(self, kind: str) -> Path:
        return self.base / "raw" / kind

    def validated(self, kind: str) -> Path:
        return self.base / "validated" / kind

    def quarantine(self, kind: str) -> Path:
        return self.base / "quarantine" / kind

    @property
    def downloads(self) -> Path:
        return self.root / "data" / "downloads"

    def fast_model_dir(self, style: str) -> Path:
        return self.base / "models" / "fast" / style

    @property
    def meta_model_dir(self) -> Path:
        return self.base / "models" / "meta"

    @property
    def eval_dir(self) -> Path:
        return self.base / "eval"

    @property
    def onnx_dir(self) -> Path:
        return self.base / "onnx"


def embedded_styles_dir() -> Path:
    return Path(str(resources.files("srstyle") / "assets" / "styles"))


def fetch_styles(
    cfg: StyleSetConfig, out_dir: Path, downloads_dir: Path, progress: bool = True, protected: Iterable[Path] = (),
) -> list[dict]:
    if cfg.source == "embedded":
        root, subdir = embedded_styles_dir(), None
    elif cfg.source == "local":
        root, subdir = Path(cfg.local_dir).expanduser(), cfg.subdir
    else:
        archive = Path(cfg.archive).expanduser()
        if not archive.is_file():
            raise FetchError(
                f"{archive}: style.styles.archive not found. Download painter-by-numbers (train.zip) from Kaggle "
                "yourself (it needs a login) and point style.styles.archive at it, or unpack it and use source: local"
            )
        root, subdir = extract_once(archive, Path(downloads_dir) / (archive.name + ".extracted")), cfg.subdir
    data_cfg = DataConfig(source="local", local_dir=str(root), subdir=subdir, val_names=cfg.held_out,
                          val_fraction=cfg.held_out_fraction)
    try:
        return fetch(data_cfg, out_dir, downloads_dir, progress=progress, protected=protected)
    except FetchError as exc:
        raise FetchError(f"style.styles: {exc}".replace("data.val_names", "style.styles.held_out")) from None
    finally:
        if cfg.source == "archive":
            shutil.rmtree(root, ignore_errors=True)


def fetch_style_data(
    cfg: StyleConfig, paths: StylePaths, progress: bool = True, protected: Iterable[Path] = (),
) -> dict[str, list[dict]]:
    """The `fetch_style` stage: content photos and style paintings under data/style/raw."""
    content = fetch(cfg.content, paths.raw("content"), paths.downloads, progress=progress, protected=protected)
    styles = fetch_styles(cfg.styles, paths.raw("styles"), paths.downloads, progress=progress, protected=protected)
    return {"content": content, "styles": styles}


def validated_files(paths: StylePaths, kind: str, split: str | None = None) -> list[Path]:
    manifest = paths.validated(kind) / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: missing; run `dvc repro validate_style` first")
    return [paths.raw(kind) / r["file"] for r in read_json(manifest) if split is None or r["split"] == split]


def style_names(paths: StylePaths, split: str | None = None) -> dict[str, Path]:
    """Style name (file stem) -> file, for the validated paintings of ``split`` (train / val = held out)."""
    return {p.stem: p for p in validated_files(paths, "styles", split)}


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1).div_(255.0).contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()


def resize_longest(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    if abs(scale - 1.0) < 1e-9:
        return rgb
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(new, Image.Resampling.BICUBIC, reducing_gap=None))


def resize_shorter(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = size / min(h, w)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(new, Image.Resampling.BICUBIC, reducing_gap=None))


def load_image(path: Path, longest: int | None = None) -> torch.Tensor:
    """(1, 3, H, W) RGB in [0, 1]; longest side resized to ``longest`` when given."""
    rgb = load_rgb(path)
    return to_tensor(resize_longest(rgb, longest) if longest else rgb)[None]


def load_painting(path: Path, longest: int | None = None) -> torch.Tensor:
    """A painting as a style target: like :func:`load_image`, without its frame (:mod:`srstyle.painting_frame`)."""
    rgb = trim_frame(load_rgb(path))
    return to_tensor(resize_longest(rgb, longest) if longest else rgb)[None]


class ContentCrops:
    """Random square content crops: shorter side resized to ``size``, a random ``size`` x ``size`` crop,
    random horizontal flip. The randomness comes from the trainer's saved generators, so a resumed run
    draws the same batches. Decoded images are kept in a bounded cache (COCO does not fit in memory)."""

    def __init__(self, files: list[Path], size: int, cache_images: int = 2048):
        if not files:
            raise ValueError("no content images to train on; check data/style/validated/content/manifest.json")
        self.files, self.size, self.cache_images = files, size, cache_images
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.files)

    def _image(self, i: int) -> np.ndarray:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        img = resize_shorter(load_rgb(self.files[i]), self.size)
        self._cache[i] = img
        if len(self._cache) > self.cache_images:
            self._cache.popitem(last=False)
        return img

    def batch(self, indices: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        return self.batch_to(indices, rng, torch.device("cpu"))

    def batch_to(self, indices: np.ndarray, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
        """float32 [N,3,size,size] in [0,1] on ``device``. On a GPU the uint8 crops (a quarter of float32's
        bytes) go from pinned memory with an asynchronous copy and become float there; x / 255 is correctly
        rounded on both, so the values are the same everywhere."""
        crops = np.empty((len(indices), self.size, self.size, 3), dtype=np.uint8)
        for k, i in enumerate(indices):
            img = self._image(int(i))
            h, w = img.shape[:2]
            y, x = int(rng.integers(0, h - self.size + 1)), int(rng.integers(0, w - self.size + 1))
            crop = img[y: y + self.size, x: x + self.size]
            crops[k] = crop[:, ::-1] if rng.random() < 0.5 else crop
        t = torch.from_numpy(crops)
        if device.type == "cuda":
            t = t.pin_memory().to(device, non_blocking=True)
        return (t.permute(0, 3, 1, 2).float() / 255.0).contiguous()
