"""The fetch stage: put the raw images of the chosen source under ``data/raw/{train,val}``.

Sources (``data.source`` in params.yaml):

* ``embedded`` - the real RGB photographs shipped inside the scikit-image wheel; works offline.
* ``url`` - an archive with a pinned sha256 (or a preset such as ``bsds300``), downloaded with resume and
  extracted safely. Downloads are kept in ``data/downloads`` (not a DVC output) so reruns resume.
* ``local`` - a folder of the user's own images; it is read, never modified.

Each source ends the same way: files copied into ``train/`` and ``val/`` by a deterministic split, and a
``manifest.json`` listing every file with its split, origin and sha256.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig
from ..io import write_json
from .archive import safe_extract
from .download import download, sha256_file

log = logging.getLogger(__name__)

# Real photographs in skimage/data (no synthetic test patterns, no grayscale-only images).
# motorcycle_left/right are a stereo pair: both stay in train so no scene leaks into validation.
# Validation uses lossless PNG photos only, as SR benchmarks do: a JPEG reference (rocket.jpg) carries
# 8x8 block artefacts that no model should reproduce from an antialiased LR image, so it trains instead.
EMBEDDED_TRAIN = [
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
]
EMBEDDED_VAL = ["astronaut.png", "chelsea.png", "coffee.png"]
# Natural grayscale photographs (cameraman, coins, moon surface, textures): luma-only models learn
# from them too, and the RGB set alone is small. Kept when data.embedded_grayscale is true.
EMBEDDED_GRAY = ["camera.png", "coins.png", "moon.png", "brick.png", "grass.png", "gravel.png"]


@dataclass(frozen=True)
class Preset:
    url: str
    sha256: str | None
    subdir: str
    train_subdir: str
    val_subdir: str
    description: str
    size_bytes: int | None = None


PRESETS: dict[str, Preset] = {
    # Martin et al., ICCV 2001. 200 train / 100 test JPEGs (481x321). The 100 test images are the B100
    # benchmark. Berkeley publishes no checksum; the first download records one (see download()).
    "bsds300": Preset(
        url="https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/BSDS300-images.tgz",
        sha256=None,
        subdir="BSDS300/images",
        train_subdir="train",
        val_subdir="test",
        description="Berkeley Segmentation Dataset 300 (BSDS300), 22 MB",
    ),
    # Lin et al., ECCV 2014: the 82,783 train2014 images Johnson et al. and Shen et al. train style networks
    # on. The COCO site publishes the size, not a checksum: the size is checked before downloading and the
    # first download's sha256 is recorded (trust on first use). Used by style.content (hash split).
    "coco2014": Preset(
        url="http://images.cocodataset.org/zips/train2014.zip",
        sha256=None,
        subdir="train2014",
        train_subdir="",
        val_subdir="",
        description="MS-COCO 2014 train images, 13.5 GB",
        size_bytes=13510573713,
    ),
}


class FetchError(RuntimeError):
    """The source cannot provide images; the message names the setting or folder to fix."""


def _is_val(stem: str, fraction: float) -> bool:
    digest = hashlib.sha1(stem.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _list_images(folder: Path, extensions: list[str]) -> list[Path]:
    exts = {e.lower() for e in extensions}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."))


def _flat_name(path: Path, root: Path) -> str:
    return "__".join(path.relative_to(root).parts)


def _assign_split(files: list[Path], root: Path, cfg: DataConfig) -> list[tuple[Path, str, str]]:
    """Return (source path, split, flat file name) for every image under ``root``."""
    out = []
    if cfg.train_subdir and cfg.val_subdir:
        for split, sub in (("train", cfg.train_subdir), ("val", cfg.val_subdir)):
            folder = root / sub
            if not folder.is_dir():
                raise FetchError(f"{folder}: split folder named by data.{split}_subdir does not exist")
            out += [(p, split, _flat_name(p, folder)) for p in _list_images(folder, cfg.extensions)]
        return out
    val_names = set(cfg.val_names)
    for p in files:
        name = _flat_name(p, root)
        stem = Path(name).stem
        split = "val" if (stem in val_names if val_names else _is_val(stem, cfg.val_fraction)) else "train"
        out.append((p, split, name))
    if val_names:
        missing = val_names - {Path(n).stem for _, _, n in out}
        if missing:
            raise FetchError(f"data.val_names lists images that are not in the source: {sorted(missing)}")
    return out


def _embedded_root() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def _copy_all(assignments: list[tuple[Path, str, str]], out_dir: Path, origin: str) -> list[dict]:
    manifest = []
    for src, split, name in assignments:
        target = out_dir / split / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        manifest.append(
            {"file": f"{split}/{name}", "split": split, "origin": f"{origin}:{src}", "sha256": sha256_file(target)}
        )
    return manifest


def fetch(cfg: DataConfig, out_dir: Path | str, downloads_dir: Path | str, progress: bool = True) -> list[dict]:
    """Run the fetch stage; returns the manifest (also written to ``out_dir/manifest.json``)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a DVC output owned by this stage, rebuilt from the source every run
    out_dir.mkdir(parents=True)

    if cfg.source == "embedded":
        root = _embedded_root()
        names = EMBEDDED_TRAIN + (EMBEDDED_GRAY if cfg.embedded_grayscale else []) + EMBEDDED_VAL
        missing = [n for n in names if not (root / n).is_file()]
        if missing:
            raise FetchError(f"scikit-image at {root} lacks {missing}; reinstall scikit-image>=0.24")
        val = set(cfg.val_names) if cfg.val_names else {Path(n).stem for n in EMBEDDED_VAL}
        assignments = [(root / n, "val" if Path(n).stem in val else "train", n) for n in names]
        manifest = _copy_all(assignments, out_dir, "skimage")
    elif cfg.source == "local":
        root = Path(cfg.local_dir).expanduser()
        if cfg.subdir:
            root = root / cfg.subdir
        if not root.is_dir():
            raise FetchError(f"{root}: data.local_dir is not a folder")
        manifest = _copy_all(_assign_split(_list_images(root, cfg.extensions), root, cfg), out_dir, "local")
    else:
        preset = PRESETS.get(cfg.preset) if cfg.preset else None
        if cfg.preset and preset is None:
            raise FetchError(f"data.preset {cfg.preset!r} is unknown; choose one of {sorted(PRESETS)}")
        url = cfg.url or preset.url
        sha = cfg.sha256 or (preset.sha256 if preset else None)
        if preset:
            cfg = cfg.model_copy(
                update={
                    "subdir": cfg.subdir or preset.subdir,
                    "train_subdir": cfg.train_subdir or preset.train_subdir,
                    "val_subdir": cfg.val_subdir or preset.val_subdir,
                }
            )
        downloads_dir = Path(downloads_dir)
        size = preset.size_bytes if preset and not cfg.url else None
        archive = download(url, downloads_dir / url.rstrip("/").rsplit("/", 1)[-1], sha, progress=progress,
                           expected_bytes=size)
        extracted = downloads_dir / (archive.name + ".extracted")
        if extracted.exists():
            shutil.rmtree(extracted)
        safe_extract(archive, extracted)
        root = extracted / cfg.subdir if cfg.subdir else extracted
        if not root.is_dir():
            raise FetchError(f"{archive}: has no folder {cfg.subdir!r} (data.subdir)")
        manifest = _copy_all(_assign_split(_list_images(root, cfg.extensions), root, cfg), out_dir, url)
        shutil.rmtree(extracted)

    if not manifest:
        raise FetchError(f"source {cfg.source!r} produced no images with extensions {cfg.extensions}")
    counts = {s: sum(m["split"] == s for m in manifest) for s in ("train", "val")}
    if not counts["val"] or not counts["train"]:
        raise FetchError(f"split has {counts}; both train and val need images (see data.val_names / val_fraction)")
    write_json(manifest, out_dir / "manifest.json")
    log.info("fetched %d train and %d val images from %s", counts["train"], counts["val"], cfg.source)
    return manifest
