"""The fetch stage: put the raw images of the chosen source under ``data/raw/{train,val}``.

Sources (``data.source`` in params.yaml):

* ``embedded`` - the real RGB photographs shipped inside the scikit-image wheel; works offline.
* ``url`` - an archive with a pinned sha256 (or a preset such as ``bsds300``), downloaded with resume and
  extracted safely. Downloads are kept in ``data/downloads`` (not a DVC output) so reruns resume.
* ``local`` - a folder of the user's own images; it is read, never modified.

Each source ends the same way: regular files copied into ``train/`` and ``val/`` by a deterministic split,
and a ``manifest.json`` with ``files`` (every file with its split, origin and sha256), ``skipped`` (links
out of the folder, devices, FIFOs: never copied, each with the reason) and ``ignored`` (files without an
image extension). Origins are relative (a package with
its version, a path inside the folder or archive), so the output is byte-identical on every machine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from ..config import DataConfig
from ..io import atomic_write, read_json, write_json
from .archive import extract_once
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
        url="https://images.cocodataset.org/zips/train2014.zip",
        sha256=None,
        subdir="train2014",
        train_subdir="",
        val_subdir="",
        description="MS-COCO 2014 train images, 13.5 GB",
        size_bytes=13510573713,
    ),
    # Agustsson & Timofte, NTIRE 2017: the 800 2K-resolution training PNGs EDSR, RCAN and BasicSR train on
    # (DIV2K_train_HR/0001.png ... 0800.png). Its 100 validation images are a second archive
    # (DIV2K_valid_HR.zip) that a preset of one archive cannot name: the training archive is split by file
    # name hash (data.val_fraction, or data.val_names), so validation is held out of the 800, and DIV2K's own
    # validation set stays a benchmark to evaluate on. The ETH site publishes no checksum: the size (the
    # server's Content-Length, as recorded by public mirrors) is checked before downloading and the first
    # download's sha256 recorded (trust on first use). Pair with patches.crop: random (profiles/div2k.yaml).
    "div2k": Preset(
        url="https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
        sha256=None,
        subdir="DIV2K_train_HR",
        train_subdir="",
        val_subdir="",
        description="DIV2K training set, 800 2K PNGs, 3.5 GB",
        size_bytes=3530603713,
    ),
}


class FetchError(RuntimeError):
    """The source cannot provide images; the message names the setting or folder to fix."""


@dataclass(frozen=True)
class Source:
    """One image a source offers: where it is read from and how the manifest names its origin."""

    path: Path
    origin: str  # relative to the source (a package with its version, a folder, a URL): same on every machine


def _is_val(stem: str, fraction: float) -> bool:
    digest = hashlib.sha1(stem.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _list_images(folder: Path, extensions: list[str], skipped: list[dict], label: str) -> list[tuple[Path, Path]]:
    """Images under ``folder``, never leaving it: links are followed only when they point inside the
    folder, linked folders are not entered, and only regular files are listed, each as (its path, the file to
    read: itself or the link's target, decided here once). Hidden files and folders are not read. What is
    left out is appended to ``skipped`` (path relative to the folder and the reason) for the manifest."""
    exts = {e.lower() for e in extensions}
    real_root = folder.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):  # followlinks=False: linked folders are not entered
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # .git, .thumbnails: not the user's images
        for name in sorted(dirnames):
            if (here / name).is_symlink():
                skipped.append({"path": f"{label}{_rel(here / name, folder)}",
                                "reason": "symbolic link to a folder: not followed"})
        for name in sorted(filenames):
            p = here / name
            if name.startswith("."):
                continue  # .DS_Store and friends
            if p.suffix.lower() not in exts:
                skipped.append({"path": f"{label}{_rel(p, folder)}", "ignored": True,
                                "reason": f"extension {p.suffix or '(none)'!r} is not in data.extensions"})
                continue
            reason, read = None, p
            mode = os.lstat(p).st_mode
            if stat.S_ISLNK(mode):
                read = p.resolve()
                if not _inside(read, real_root):
                    reason = "symbolic link pointing outside the folder: not followed"
                elif not read.exists() or not stat.S_ISREG(os.lstat(read).st_mode):
                    reason = "symbolic link to something that is not a regular file"
            elif not stat.S_ISREG(mode):
                reason = "not a regular file (device, FIFO or socket): not copied"
            if reason:
                skipped.append({"path": f"{label}{_rel(p, folder)}", "reason": reason})
                log.warning("skipped %s: %s", p, reason)
            else:
                found.append((p, read))
    return sorted(found)


def _flat_name(path: Path, root: Path) -> str:
    return "__".join(path.relative_to(root).parts)


def _assign_split(root: Path, cfg: DataConfig, origin: str, skipped: list[dict]) -> list[tuple[Source, str, str]]:
    """Return (source, split, flat file name) for every image under ``root``."""
    out = []
    if cfg.train_subdir and cfg.val_subdir:
        for split, sub in (("train", cfg.train_subdir), ("val", cfg.val_subdir)):
            folder = root / sub
            if not folder.is_dir():
                raise FetchError(f"{folder}: split folder named by data.{split}_subdir does not exist")
            for p, read in _list_images(folder, cfg.extensions, skipped, f"{sub}/"):
                out.append((Source(read, f"{origin}:{_rel(p, root)}"), split, _flat_name(p, folder)))
        return out
    val_names = set(cfg.val_names)
    for p, read in _list_images(root, cfg.extensions, skipped, ""):
        name = _flat_name(p, root)
        stem = Path(name).stem
        split = "val" if (stem in val_names if val_names else _is_val(stem, cfg.val_fraction)) else "train"
        out.append((Source(read, f"{origin}:{_rel(p, root)}"), split, name))
    if val_names:
        missing = val_names - {Path(n).stem for _, _, n in out}
        if missing:
            raise FetchError(f"data.val_names lists images that are not in the source: {sorted(missing)}")
    return out


def _refuse_collisions(assignments: list[tuple[Source, str, str]]) -> None:
    """Sub-folders are flattened (``a/b.png`` -> ``a__b.png``); two sources must never share a name, also
    not by case alone (a case-insensitive file system would keep one of them)."""
    seen: dict[tuple[str, str], Source] = {}
    for src, split, name in assignments:
        key = (split, name.lower())
        if key in seen:
            raise FetchError(
                f"{seen[key].origin} and {src.origin} would both be stored as {split}/{name}; rename one of them"
            )
        seen[key] = src


def _embedded_sources(names: list[str]) -> dict[str, Source]:
    import skimage

    root = Path(skimage.__file__).parent / "data"
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FetchError(f"scikit-image at {root} lacks {missing}; reinstall scikit-image>=0.24")
    return {n: Source(root / n, f"skimage=={skimage.__version__}:data/{n}") for n in names}


def _copy_regular(src: Path, target: Path) -> None:
    """Copy a regular file without following a link planted between listing and copying (O_NOFOLLOW), and
    without blocking on a FIFO (O_NONBLOCK); anything else raises FetchError."""
    try:
        fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise FetchError(f"{src}: cannot be read ({exc.strerror}); rerun the fetch stage") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise FetchError(f"{src}: is no longer a regular file; rerun the fetch stage")
        with atomic_write(target, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)


def _copy_all(assignments: list[tuple[Source, str, str]], out_dir: Path) -> list[dict]:
    _refuse_collisions(assignments)
    manifest = []
    for src, split, name in assignments:
        target = out_dir / split / name
        _copy_regular(src.path, target)
        manifest.append({"file": f"{split}/{name}", "split": split, "origin": src.origin, "sha256": sha256_file(target)})
    return manifest


def stage_outputs(root: Path) -> list[Path]:
    """Every output folder/file of ``root/dvc.yaml`` (templated parts cut off): DVC deletes them before
    their stage runs, so a local source must not live there."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        return []
    stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages") or {}
    found = set()
    for stage in stages.values():
        body = stage.get("do", stage) if isinstance(stage, dict) else {}
        for out in body.get("outs") or []:
            path = next(iter(out)) if isinstance(out, dict) else str(out)
            parts = []
            for part in Path(path).parts:
                if "${" in part:
                    break
                parts.append(part)
            if parts:
                found.add(root.joinpath(*parts))
    return sorted(found)


def check_local_dir(root: Path, forbidden: Iterable[Path]) -> None:
    """Refuse a local folder inside a stage output (deleted before it is read) or holding one."""
    real = root.resolve()
    for out in forbidden:
        out_real = Path(out).resolve()
        if _inside(real, out_real):
            raise FetchError(
                f"{root}: data.local_dir is inside {out}, a pipeline output that is deleted before this stage "
                "reads it; move your images to a folder of their own"
            )
        if _inside(out_real, real):
            raise FetchError(
                f"{root}: data.local_dir contains {out}, a pipeline output; point it at a folder that holds "
                "only your images"
            )


def read_manifest(raw_dir: Path | str) -> tuple[list[dict], list[dict]]:
    """(files, skipped) of a fetch output: skipped = images refused for safety (links out, special files).
    An older plain-list manifest has no skipped entries."""
    data = read_json(Path(raw_dir) / "manifest.json")
    if isinstance(data, list):
        return data, []
    return data["files"], data.get("skipped", [])


def fetch(
    cfg: DataConfig, out_dir: Path | str, downloads_dir: Path | str, progress: bool = True,
    protected: Iterable[Path] = (),
) -> list[dict]:
    """Run the fetch stage; returns the file entries of the manifest written to ``out_dir/manifest.json``.

    ``protected``: pipeline outputs (see :func:`stage_outputs`) a local folder must not be inside of.
    """
    out_dir = Path(out_dir)
    local_root = None
    if cfg.source == "local":
        local_root = Path(cfg.local_dir).expanduser()
        if cfg.subdir:
            local_root = local_root / cfg.subdir
        if not local_root.is_dir():
            raise FetchError(f"{local_root}: data.local_dir is not a folder")
        # Checked before anything is deleted: out_dir is removed below.
        check_local_dir(local_root, [out_dir, *protected])
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a DVC output owned by this stage, rebuilt from the source every run
    out_dir.mkdir(parents=True)

    skipped: list[dict] = []
    if cfg.source == "embedded":
        names = EMBEDDED_TRAIN + (EMBEDDED_GRAY if cfg.embedded_grayscale else []) + EMBEDDED_VAL
        sources = _embedded_sources(names)
        val = set(cfg.val_names) if cfg.val_names else {Path(n).stem for n in EMBEDDED_VAL}
        manifest = _copy_all([(sources[n], "val" if Path(n).stem in val else "train", n) for n in names], out_dir)
    elif cfg.source == "local":
        manifest = _copy_all(_assign_split(local_root, cfg, "local", skipped), out_dir)
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
        extracted = extract_once(archive, downloads_dir / (archive.name + ".extracted"))
        root = extracted / cfg.subdir if cfg.subdir else extracted
        if not root.is_dir():
            raise FetchError(f"{archive}: has no folder {cfg.subdir!r} (data.subdir)")
        manifest = _copy_all(_assign_split(root, cfg, url, skipped), out_dir)
        shutil.rmtree(extracted)  # the archive stays for reruns; its extracted copy would double the disk use

    if not manifest:
        raise FetchError(f"source {cfg.source!r} produced no images with extensions {cfg.extensions}")
    counts = {s: sum(m["split"] == s for m in manifest) for s in ("train", "val")}
    if not counts["val"] or not counts["train"]:
        raise FetchError(f"split has {counts}; both train and val need images (see data.val_names / val_fraction)")
    skipped.sort(key=lambda e: e["path"])
    ignored = [{"path": e["path"], "reason": e["reason"]} for e in skipped if e.get("ignored")]
    refused = [e for e in skipped if not e.get("ignored")]
    write_json({"files": manifest, "skipped": refused, "ignored": ignored}, out_dir / "manifest.json")
    log.info("fetched %d train and %d val images from %s; %d skipped, %d non-image files ignored "
             "(listed in manifest.json)", counts["train"], counts["val"], cfg.source, len(refused), len(ignored))
    return manifest
