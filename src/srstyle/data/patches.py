"""The patches stage: aligned LR/HR patch pairs in one memory-mappable array store per split/mode/scale.

For each image: mod-crop to the scale, make the LR image by antialiased bicubic downscaling of the RGB
HR image (as SR papers do), then cut HR crops of ``hr_size`` at ``stride`` and the aligned LR crops.
Mode ``y`` stores BT.601 luma rounded to uint8 (what reading an 8-bit YCbCr image gives), mode ``rgb``
stores RGB. A store is a folder of ``.npy`` files (``hr``, ``lr``, ``origin``) plus ``index.json``;
training reads them with ``mmap_mode="r"``, so nothing is decoded inside the training loop.
``patches.crop: random`` stores the training images as sub-images instead (:mod:`srstyle.data.subimages`).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap
from tqdm.auto import tqdm

from ..color import rgb_to_y, to_uint8
from ..config import PatchesConfig, check_subimages
from ..io import load_rgb, read_json, write_json
from ..resize import downscale_rgb, modcrop

log = logging.getLogger(__name__)

# Disk left free after a store is written: the DVC cache, MLflow and checkpoints need room too.
DISK_RESERVE_BYTES = 1 << 30


def store_name(mode: str, scale: int, hr_size: int | None = None) -> str:
    """``y_x3``; a run with its own patch size (``runs.<name>.hr_size``) has ``rgb_x4_hr192``."""
    return f"{mode}_x{scale}" if hr_size is None else f"{mode}_x{scale}_hr{hr_size}"


def store_bytes(count: int, hr_size: int, lr_size: int, mode: str) -> int:
    """Bytes of a store of ``count`` patch pairs (uint8 HR + LR, plus the int32 origin of each)."""
    channels = 1 if mode == "y" else 3
    return count * ((hr_size * hr_size + lr_size * lr_size) * channels + 3 * 4)


GRID_ADVICE = "patches.stride up, patches.max_per_image, fewer patches.scales/modes, or patches.crop: random"


def check_disk(folder: Path, need: int, what: str, reserve: int = DISK_RESERVE_BYTES, advice: str = GRID_ADVICE) -> None:
    """Refuse to start writing ``need`` bytes under ``folder`` when the disk cannot hold them (plus ``reserve``):
    a store that fills the disk half-way fails late and leaves the disk full for everything else."""
    free = shutil.disk_usage(folder).free
    if need + reserve > free:
        raise OSError(errno.ENOSPC, f"{what} needs {need / 1e9:.2f} GB but {folder} has {free / 1e9:.2f} GB free "
                                    f"({reserve / 1e9:.1f} GB kept in reserve): free some disk, or make the stores "
                                    f"smaller ({advice})")


@contextmanager
def atomic_store(out_dir: Path):
    """A temporary folder beside ``out_dir`` to write a store into, renamed into place when the block ends
    (removed on any error): a store is whole or absent, never half-written."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _positions(h: int, w: int, size: int, stride: int) -> np.ndarray:
    ys = np.arange(0, h - size + 1, stride)
    xs = np.arange(0, w - size + 1, stride)
    return np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2).astype(np.int32)


def _convert(rgb: np.ndarray, mode: str) -> np.ndarray:
    return to_uint8(rgb_to_y(rgb)) if mode == "y" else rgb


def _textured(y: np.ndarray, pos: np.ndarray, size: int, min_std: float) -> np.ndarray:
    if min_std <= 0 or len(pos) == 0:
        return pos
    windows = np.lib.stride_tricks.sliding_window_view(y, (size, size))
    std = np.array([windows[py, px].std() for py, px in pos])
    return pos[std >= min_std]


def _select(name: str, hr: np.ndarray, size: int, cfg: PatchesConfig, seed: int, min_std: float) -> np.ndarray:
    """Patch positions of one (mod-cropped) HR image: textured ones, at most max_per_image, seeded by name."""
    pos = _textured(rgb_to_y(hr), _positions(*hr.shape[:2], size, cfg.stride), size, min_std)
    if cfg.max_per_image and len(pos) > cfg.max_per_image:
        digest = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big")
        pos = pos[np.sort(np.random.default_rng(digest).choice(len(pos), cfg.max_per_image, replace=False))]
    return pos


def build_store(
    images: list[tuple[str, Path]], out_dir: Path, mode: str, scale: int, cfg: PatchesConfig, seed: int,
    max_pixels: int, progress: bool = True, min_std: float = 0.0, formats: list[str] | None = None,
) -> dict:
    """Write one store atomically (temporary folder renamed into place); return its index.

    Two streaming passes, so memory holds one decoded image at a time (a split of DIV2K or COCO does not
    fit in RAM): the first decodes each image to choose its patch positions and sizes the store, the
    second decodes it again and writes its patches into the memory-mapped arrays.
    """
    size, lr_size = cfg.hr_size, cfg.hr_size // scale
    # The formats validation opened the files with (validate.allowed_formats), else the loader's default.
    decode_kw = {"formats": formats} if formats else {}
    positions = []
    for name, path in tqdm(images, desc=f"{out_dir.name} (sizing)", disable=not progress):
        positions.append(_select(name, modcrop(load_rgb(path, max_pixels, **decode_kw), scale), size, cfg, seed, min_std))
    total = sum(len(p) for p in positions)
    if total == 0:
        raise ValueError(f"no {size}x{size} patch fits in any image for {out_dir.name}; lower patches.hr_size")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # The sizing pass gave the exact count: check the disk before the first byte (the arrays are sparse
    # files until written, so the disk would fill only while writing, deep into the stage).
    need = store_bytes(total, size, lr_size, mode)
    log.info("%s: %d patches, %.2f GB", out_dir, total, need / 1e9)
    check_disk(out_dir.parent, need, f"the {out_dir.parent.name}/{out_dir.name} patch store ({total} patches of {size}px)")
    with atomic_store(out_dir) as tmp:
        tail = () if mode == "y" else (3,)
        hr_store = open_memmap(tmp / "hr.npy", mode="w+", dtype=np.uint8, shape=(total, size, size, *tail))
        lr_store = open_memmap(tmp / "lr.npy", mode="w+", dtype=np.uint8, shape=(total, lr_size, lr_size, *tail))
        origin = np.zeros((total, 3), dtype=np.int32)  # image index, HR y, HR x
        i = 0
        for k, ((name, path), pos) in enumerate(tqdm(list(zip(images, positions)), desc=out_dir.name, disable=not progress)):
            if not len(pos):
                continue
            hr_rgb = modcrop(load_rgb(path, max_pixels, **decode_kw), scale)
            lr_rgb = downscale_rgb(hr_rgb, scale)
            hr, lr = _convert(hr_rgb, mode), _convert(lr_rgb, mode)
            for y, x in pos:
                hr_store[i] = hr[y : y + size, x : x + size]
                lr_store[i] = lr[y // scale : y // scale + lr_size, x // scale : x // scale + lr_size]
                origin[i] = (k, y, x)
                i += 1
        hr_store.flush()
        lr_store.flush()
        del hr_store, lr_store
        np.save(tmp / "origin.npy", origin)
        index = {
            "mode": mode,
            "scale": scale,
            "hr_size": size,
            "lr_size": lr_size,
            "stride": cfg.stride,
            "min_std": min_std,
            "count": total,
            "images": [{"file": name, "patches": int(len(p))} for (name, _), p in zip(images, positions)],
        }
        write_json(index, tmp / "index.json")
    return index


def make_patches(
    validated_dir: Path | str, raw_dir: Path | str, out_dir: Path | str, cfg: PatchesConfig, seed: int,
    max_pixels: int, progress: bool = True, extra_stores: list[tuple] = (),
    formats: list[str] | None = None,
) -> dict:
    """Run the patches stage over the validated manifest; returns {store path: patch count} (sub-image count
    for a random-crop store).

    Builds a store for every (mode, scale) of ``patches.modes`` x ``patches.scales`` plus ``extra_stores``
    (the stage passes the ones the configured runs need): ``(mode, scale)`` at ``patches.hr_size``, or
    ``(mode, scale, hr_size)`` for a run with its own patch size (same stride and filtering).
    With ``patches.crop: random`` the training split gets one sub-image store per (mode, scale) instead
    (:mod:`srstyle.data.subimages`), named as the default-size grid store and serving every patch size.
    """
    validated_dir, raw_dir, out_dir = Path(validated_dir), Path(raw_dir), Path(out_dir)
    manifest = read_json(validated_dir / "manifest.json")
    wanted = {(m, s, None) for m in cfg.modes for s in cfg.scales}
    wanted |= {(e[0], e[1], e[2] if len(e) > 2 and e[2] != cfg.hr_size else None) for e in extra_stores}
    stores = sorted(wanted, key=lambda e: (e[0], e[1], e[2] or 0))
    for mode, scale, hr_size in stores:
        if (hr_size or cfg.hr_size) % scale or cfg.stride % scale:
            raise ValueError(f"patches.hr_size={hr_size or cfg.hr_size} and patches.stride={cfg.stride} must be "
                             f"multiples of scale {scale}")
        if cfg.crop == "random":  # a run's scale may be outside patches.scales: check its alignment here too
            if cfg.subimage_size % scale or cfg.subimage_step % scale:
                raise ValueError(f"patches.subimage_size={cfg.subimage_size} and patches.subimage_step="
                                 f"{cfg.subimage_step} must be multiples of scale {scale}")
            check_subimages(cfg, hr_size or cfg.hr_size, f"the {store_name(mode, scale, hr_size)} store's hr_size")
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a DVC output of this stage: stale stores must not survive a change of runs
    counts = {}
    for split in ("train", "val"):
        images = [(m["file"], raw_dir / m["file"]) for m in manifest if m["split"] == split]
        if split == "train" and cfg.crop == "random":
            from .subimages import build_subimage_store  # (it builds on this module's helpers)

            for mode, scale in sorted({(m, s) for m, s, _ in stores}):
                store = out_dir / split / store_name(mode, scale)
                index = build_subimage_store(images, store, mode, scale, cfg, max_pixels, progress, formats)
                counts[f"{split}/{store.name}"] = index["count"]
            continue
        for mode, scale, hr_size in stores:
            store = out_dir / split / store_name(mode, scale, hr_size)
            min_std = cfg.min_std if split == "train" else 0.0
            store_cfg = cfg if hr_size is None else cfg.model_copy(update={"hr_size": hr_size})
            index = build_store(images, store, mode, scale, store_cfg, seed, max_pixels, progress, min_std, formats)
            counts[f"{split}/{store.name}"] = index["count"]
    write_json(counts, out_dir / "summary.json")
    return counts
