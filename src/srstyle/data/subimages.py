"""The random-crop store (``patches.crop: random``): each training image stored once, as sub-images.

A grid store holds every stride-spaced patch, so it grows with the data set and with the patch size
(DIV2K at 96 px / stride 48: ~26 GB per store, and one more store per patch size). Here the patches stage
stores each mod-cropped HR image and its bicubic LR image (made exactly as the grid store makes them) as
overlapping sub-images (BasicSR's ``extract_subimages``: side ``subimage_size``, every ``subimage_step``,
the last one flush with the border), and training draws a random scale-aligned crop of the run's own size
(:class:`srstyle.data.datasets.RandomCropStore`). Sub-images rather than whole images because a crop then
reads a few contiguous rows of one small sub-image from the memory map, not rows a whole image width apart.

Sub-images of one image all have one shape (``min(subimage_size, side)`` per axis), so they are stored
back to back in two flat uint8 arrays (``hr.npy``, ``lr.npy``); ``index.json`` gives each image's sub-image
starts and byte offsets.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap
from tqdm.auto import tqdm

from ..config import PatchesConfig
from ..io import load_rgb, write_json
from ..resize import downscale_rgb, modcrop
from .patches import _convert, atomic_store, check_disk

log = logging.getLogger(__name__)


def subimage_starts(length: int, size: int, step: int) -> list[int]:
    """Starts along one axis: every ``step``, plus one flush with the end so the border is covered
    (BasicSR's rule, without its threshold: no crop position may be lost). Short sides: one sub-image."""
    size = min(size, length)
    starts = list(range(0, length - size + 1, step))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def image_layout(height: int, width: int, scale: int, cfg: PatchesConfig, channels: int) -> dict:
    """Where one mod-cropped image's sub-images lie (without its byte offsets)."""
    sub_h, sub_w = min(cfg.subimage_size, height), min(cfg.subimage_size, width)
    ys = subimage_starts(height, cfg.subimage_size, cfg.subimage_step)
    xs = subimage_starts(width, cfg.subimage_size, cfg.subimage_step)
    n = len(ys) * len(xs)
    return {"height": height, "width": width, "sub_h": sub_h, "sub_w": sub_w, "ys": ys, "xs": xs,
            "hr_bytes": n * sub_h * sub_w * channels, "lr_bytes": n * (sub_h // scale) * (sub_w // scale) * channels}


def build_subimage_store(
    images: list[tuple[str, Path]], out_dir: Path, mode: str, scale: int, cfg: PatchesConfig, max_pixels: int,
    progress: bool = True, formats: list[str] | None = None,
) -> dict:
    """Write one random-crop store atomically; return its index. Two streaming passes as
    :func:`srstyle.data.patches.build_store`: sizing (decode, mod-crop, lay out), then writing."""
    channels = 1 if mode == "y" else 3
    decode_kw = {"formats": formats} if formats else {}
    layouts, hr_total, lr_total = [], 0, 0
    for name, path in tqdm(images, desc=f"{out_dir.name} (sizing)", disable=not progress):
        h, w = modcrop(load_rgb(path, max_pixels, **decode_kw), scale).shape[:2]
        lay = image_layout(h, w, scale, cfg, channels)
        layouts.append({"file": name, **lay, "hr_offset": hr_total, "lr_offset": lr_total})
        hr_total, lr_total = hr_total + lay["hr_bytes"], lr_total + lay["lr_bytes"]
    if not images:
        raise ValueError(f"no training image for {out_dir.name}")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    need = hr_total + lr_total
    count = sum(len(lay["ys"]) * len(lay["xs"]) for lay in layouts)
    log.info("%s: %d sub-images of %d images, %.2f GB", out_dir, count, len(images), need / 1e9)
    check_disk(out_dir.parent, need, f"the {out_dir.parent.name}/{out_dir.name} sub-image store ({count} sub-images)",
               advice="patches.subimage_step up to subimage_size - the largest hr_size, fewer patches.scales/modes")
    with atomic_store(out_dir) as tmp:
        hr_store = open_memmap(tmp / "hr.npy", mode="w+", dtype=np.uint8, shape=(hr_total,))
        lr_store = open_memmap(tmp / "lr.npy", mode="w+", dtype=np.uint8, shape=(lr_total,))
        for (name, path), lay in tqdm(list(zip(images, layouts)), desc=out_dir.name, disable=not progress):
            hr_rgb = modcrop(load_rgb(path, max_pixels, **decode_kw), scale)
            hr, lr = _convert(hr_rgb, mode), _convert(downscale_rgb(hr_rgb, scale), mode)
            sh, sw, s = lay["sub_h"], lay["sub_w"], scale
            hr_off, lr_off = lay["hr_offset"], lay["lr_offset"]
            for y in lay["ys"]:
                for x in lay["xs"]:
                    a, b = hr[y : y + sh, x : x + sw].ravel(), lr[y // s : (y + sh) // s, x // s : (x + sw) // s].ravel()
                    hr_store[hr_off : hr_off + a.size], lr_store[lr_off : lr_off + b.size] = a, b
                    hr_off, lr_off = hr_off + a.size, lr_off + b.size
        hr_store.flush()
        lr_store.flush()
        del hr_store, lr_store
        index = {
            "crop": "random",
            "mode": mode,
            "scale": scale,
            "hr_size": cfg.hr_size,  # the crop size of runs without their own hr_size
            "subimage_size": cfg.subimage_size,
            "subimage_step": cfg.subimage_step,
            "count": count,          # sub-images; the reader's index counts the crop positions of its hr_size
            "bytes": need,
            "images": layouts,
        }
        write_json(index, tmp / "index.json")
    return index
