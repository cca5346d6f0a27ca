"""Standard SR benchmark sets as fetch sources: Set5, Set14, BSD100 (B100), Urban100, DIV2K validation.

Each set comes from a public archive (downloaded once into ``data/downloads``, resumable, checksummed,
extracted safely) or from a local folder the user points to. HR images are mod-cropped to a multiple of 12
so one HR image serves x2, x3 and x4, as the published tables do. The offline default is ``embedded``:
the validation photos of the fetch stage.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import load_rgb, save_png, write_json
from ..resize import modcrop
from .archive import extract_once
from .download import download

log = logging.getLogger(__name__)
MOD = 12
EDSR_BENCHMARK_URL = "https://cv.snu.ac.kr/research/EDSR/benchmark.tar"


@dataclass(frozen=True)
class BenchmarkSource:
    url: str
    sha256: str | None  # None: no published checksum; the first download records one (see download())
    subdir: str
    description: str


# The EDSR authors' benchmark archive holds Set5, Set14, B100 and Urban100 (HR and bicubic LR); one download.
BENCHMARKS: dict[str, BenchmarkSource] = {
    "set5": BenchmarkSource(EDSR_BENCHMARK_URL, None, "benchmark/Set5/HR", "Set5 (Bevilacqua et al. 2012), 5 images"),
    "set14": BenchmarkSource(EDSR_BENCHMARK_URL, None, "benchmark/Set14/HR", "Set14 (Zeyde et al. 2010), 14 images"),
    "b100": BenchmarkSource(EDSR_BENCHMARK_URL, None, "benchmark/B100/HR", "BSD100 (Martin et al. 2001), 100 images"),
    "urban100": BenchmarkSource(EDSR_BENCHMARK_URL, None, "benchmark/Urban100/HR", "Urban100 (Huang et al. 2015), 100 images"),
    "div2k_val": BenchmarkSource("https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip", None, "DIV2K_valid_HR",
                                 "DIV2K validation HR (Agustsson & Timofte 2017), 100 images"),
}
IMAGE_EXTENSIONS = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"}


class BenchmarkError(RuntimeError):
    """A benchmark set cannot be prepared; the message names the set and what to do."""


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _write_modcropped(sources: list[Path], folder: Path, out: Path, max_pixels: int) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for src in sources:
        hr = modcrop(load_rgb(src, max_pixels), MOD)
        target = out / (src.stem + ".png")
        save_png(np.ascontiguousarray(hr), target)
        # The source relative to its set's folder: the manifest is the same on every machine.
        entries.append({"file": target.name, "width": hr.shape[1], "height": hr.shape[0],
                        "source": src.relative_to(folder).as_posix()})
    return entries


def prepare_benchmark(
    name: str, out_dir: Path, downloads_dir: Path, *, local_dir: str | None = None, embedded_from: Path | None = None,
    max_pixels: int = 40_000_000, progress: bool = True,
) -> list[dict]:
    """Write mod-cropped HR PNGs of benchmark ``name`` to ``out_dir/name``; returns its manifest."""
    target = out_dir / name
    if target.exists():
        shutil.rmtree(target)
    if local_dir:
        folder = Path(local_dir).expanduser()
        if not folder.is_dir():
            raise BenchmarkError(f"benchmark.local.{name}: {folder} is not a folder")
        sources = _images(folder)
    elif name == "embedded":
        if embedded_from is None or not embedded_from.is_dir():
            raise BenchmarkError("benchmark set 'embedded' needs the fetch stage's data/raw/val (run dvc repro fetch)")
        folder = embedded_from
        sources = _images(folder)
    elif name in BENCHMARKS:
        src = BENCHMARKS[name]
        archive = download(src.url, downloads_dir / src.url.rsplit("/", 1)[-1], src.sha256, progress=progress)
        # Kept for the other sets of the same archive; an interrupted extraction has no marker and is redone.
        extracted = extract_once(archive, downloads_dir / (archive.name + ".extracted"))
        folder = extracted / src.subdir
        if not folder.is_dir():
            raise BenchmarkError(f"{archive}: has no folder {src.subdir!r} for benchmark {name!r}")
        sources = _images(folder)
    else:
        raise BenchmarkError(f"unknown benchmark set {name!r}; choose from embedded, {', '.join(BENCHMARKS)} "
                             "or give a folder under benchmark.local")
    if not sources:
        raise BenchmarkError(f"benchmark set {name!r}: no images found")
    manifest = _write_modcropped(sources, folder, target, max_pixels)
    write_json(manifest, target / "manifest.json")
    log.info("benchmark %s: %d images", name, len(manifest))
    return manifest
