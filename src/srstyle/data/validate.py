"""The validate stage: a Great Expectations suite over a per-image table, with quarantine.

Each raw image becomes one row (file, sha256, format, mode, frames, size, bytes, decodes?, duplicate_of).
Files are opened with the allowed formats only (no other Pillow plugin parses them), the declared size is
checked before any pixel is decoded, and one file that breaks a decoder is a row with the reason, never
an aborted stage. A GX suite checks the rows; every failing file is *copied* to the quarantine folder (the
originals are never touched) and named in ``report.json`` beside GX's Data Docs page (``report.html``).

Policy (what the loader, :func:`srstyle.io.load_rgb`, does with a file is what validation records):

* RGBA, LA, palette (with or without transparency), CMYK, 1-bit and 16-bit greyscale images are valid;
  the loader normalises them to 8-bit RGB (alpha over white, CMYK and 16-bit converted) and
  ``validated/manifest.json`` records each conversion in the file's ``notes``; so are the EXIF rotation and
  a file extension that does not match the content.
* Animated GIF/WebP and multi-page TIFF are quarantined: which frame is the photo is not ours to guess.
  A camera's MPO JPEG (a photo plus previews or a stereo pair) is valid: its primary image is the photo.
* The stage fails when fewer than ``validate.min_valid_fraction`` of the files are valid (default 0.9), and
  the log always says how many were lost, including what the fetch stage skipped.
"""

from __future__ import annotations

import logging
import re
import shutil
import warnings
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from ..config import ValidateConfig
from ..io import atomic_write, decode_oriented, to_rgb, write_json
from .download import sha256_file
from .fetch import read_manifest
from .gx_report import run_checkpoint, stable_result

log = logging.getLogger(__name__)

# How the loader (io.to_rgb) turns each mode into 8-bit RGB; a test keeps these words true.
BACKGROUND = (255, 255, 255)
CONVERSIONS = {
    "RGBA": f"RGBA -> RGB: alpha composited over white {BACKGROUND}",
    "LA": f"LA -> RGB: alpha composited over white {BACKGROUND}",
    "PA": f"PA -> RGB: alpha composited over white {BACKGROUND}",
    "P": "P -> RGB: palette expanded",
    "P+transparency": f"P -> RGB: palette expanded, transparent colour composited over white {BACKGROUND}",
    "CMYK": "CMYK -> RGB: Pillow's conversion (an embedded ICC profile is not applied)",
    "I;16": "16-bit greyscale -> 8-bit RGB: the high byte kept (value >> 8)",
    "I;16B": "16-bit greyscale -> 8-bit RGB: the high byte kept (value >> 8)",
    "I;16L": "16-bit greyscale -> 8-bit RGB: the high byte kept (value >> 8)",
    "1": "1-bit -> RGB: black and white",
    "L": "greyscale -> RGB: the grey value in all three channels",
    "L+transparency": f"greyscale -> RGB: transparent grey composited over white {BACKGROUND}",
    "RGB+transparency": f"RGB: transparent colour composited over white {BACKGROUND}",
    "1+transparency": f"1-bit -> RGB: transparent colour composited over white {BACKGROUND}",
}
EXTENSIONS = {
    "PNG": {".png"}, "JPEG": {".jpg", ".jpeg", ".jpe"}, "BMP": {".bmp"}, "TIFF": {".tif", ".tiff"}, "WEBP": {".webp"},
}
_SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"%PDF", "PDF"), (b"8BPS", "PSD"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG2000"), (b"\x00\x00\x01\x00", "ICO"), (b"PK\x03\x04", "ZIP"),
]
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


class ValidationFailed(RuntimeError):
    """Too few valid images; the message points at the quarantine report."""


def sniff(head: bytes) -> str | None:
    """What a file is by its first bytes, to say *why* a file is not an allowed image."""
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        return "HEIF/AVIF"
    text = head.lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in text:
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return None


def _notes(path: Path, img: Image.Image) -> list[str]:
    notes = []
    key = f"{img.mode}+transparency" if "transparency" in img.info else img.mode
    key = key if key in CONVERSIONS else img.mode
    if key in CONVERSIONS:
        notes.append(CONVERSIONS[key])
    elif img.mode != "RGB":
        notes.append(f"{img.mode} -> RGB: Pillow's conversion")
    orientation = img.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        notes.append(f"EXIF orientation {orientation} applied")
    fmt = "JPEG" if img.format == "MPO" else img.format
    if path.suffix.lower() not in EXTENSIONS.get(fmt, {path.suffix.lower()}):
        notes.append(f"extension {path.suffix} but the content is {img.format}")
    return notes


def image_row(path: Path, file: str, cfg: ValidateConfig) -> dict:
    """Facts about one file, gathered without trusting it. Never raises: a failure is the row's error."""
    row = {
        "file": file, "sha256": None, "bytes": None, "format": None, "mode": None, "frames": None,
        "width": None, "height": None, "min_side": None, "pixels": None, "decodes": False, "error": None,
        "notes": [],
    }
    try:
        row["sha256"], row["bytes"] = sha256_file(path), path.stat().st_size
        if row["bytes"] == 0:
            row["error"] = "file is empty (0 bytes)"
            return row
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own cap applies below
            img = Image.open(path, formats=cfg.allowed_formats)
        with img:
            row["format"], row["mode"] = img.format, img.mode
            row["frames"] = int(getattr(img, "n_frames", 1))
            if img.format == "MPO":
                # A camera JPEG with extra pictures (previews, stereo, depth): the first is the photo, and
                # it is what the loader decodes.
                row["format"], row["frames"] = "JPEG", 1
                row["notes"] = [f"MPO: the primary JPEG image is used, {img.n_frames - 1} extra image(s) ignored"]
            w, h = img.size
            row["pixels"] = w * h
            if w * h > cfg.max_pixels:
                # Never decode a would-be bomb: the size cap expectation rejects it.
                row["decodes"] = None
                row["error"] = f"declared size {w}x{h} exceeds max_pixels={cfg.max_pixels}; not decoded"
                row["width"], row["height"], row["min_side"] = w, h, min(w, h)
                return row
            oriented = decode_oriented(img, path)
            to_rgb(oriented, path)  # what the loader does: a file it cannot normalise is not valid
            row["notes"] += _notes(path, img)
            w, h = oriented.size  # EXIF rotation swaps width and height
            row["width"], row["height"], row["min_side"] = w, h, min(w, h)
            row["decodes"] = True
    except UnidentifiedImageError:
        with open(path, "rb") as f:
            kind = sniff(f.read(512))
        row["format"] = kind
        if kind in cfg.allowed_formats:
            row["error"] = f"looks like {kind} but Pillow cannot read its header (damaged file)"
        else:
            row["error"] = f"{kind or 'unknown binary'} content is not one of validate.allowed_formats {cfg.allowed_formats}"
    except Image.DecompressionBombError as exc:
        match = _BOMB_PIXELS.search(str(exc))
        row["pixels"] = int(match.group(1)) if match else cfg.max_pixels + 1
        row["decodes"] = None
        row["error"] = f"declared size of {row['pixels']} pixels exceeds max_pixels={cfg.max_pixels}; not decoded"
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's problem, never the stage's
        message = str(exc).removeprefix(f"{path}: ").replace(str(path), file)  # no machine paths in reports
        row["error"] = f"{type(exc).__name__}: {message}" if not isinstance(exc, ValueError) else message
    return row


def build_table(raw_dir: Path, manifest: list[dict], cfg: ValidateConfig) -> pd.DataFrame:
    rows = []
    for entry in manifest:
        row = image_row(raw_dir / entry["file"], entry["file"], cfg)
        row["split"] = entry["split"]
        rows.append(row)
    table = pd.DataFrame(rows)
    first_seen: dict[str, str] = {}
    duplicate_of = []
    for file, digest in zip(table["file"], table["sha256"]):
        duplicate_of.append(first_seen.get(digest) if digest else None)
        if digest:
            first_seen.setdefault(digest, file)
    table["duplicate_of"] = pd.Series(duplicate_of, dtype=object)
    return table


def _expectations(gx, cfg: ValidateConfig, min_side: int) -> tuple[list, list[str]]:
    E = gx.expectations
    checks = [
        (E.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]),
         "decodes: the file is a complete image of an allowed format that the loader can read"),
        (E.ExpectColumnValuesToBeInSet(column="format", value_set=cfg.allowed_formats),
         f"format in {cfg.allowed_formats} (validate.allowed_formats)"),
        (E.ExpectColumnValuesToBeInSet(column="mode", value_set=cfg.allowed_modes),
         f"mode in {cfg.allowed_modes} (validate.allowed_modes)"),
        (E.ExpectColumnValuesToBeBetween(column="frames", min_value=1, max_value=1),
         "a single frame: animated GIF/WebP and multi-page TIFF are refused (which frame is the photo?)"),
        (E.ExpectColumnValuesToBeBetween(column="min_side", min_value=min_side),
         f"shorter side >= {min_side} px, the HR patch size (patches.hr_size)"),
        (E.ExpectColumnValuesToBeBetween(column="pixels", min_value=1, max_value=cfg.max_pixels),
         f"width*height <= {cfg.max_pixels} (validate.max_pixels)"),
        (E.ExpectColumnValuesToBeBetween(column="bytes", min_value=1, max_value=cfg.max_bytes),
         f"1 <= file size <= {cfg.max_bytes} bytes (validate.max_bytes)"),
        (E.ExpectColumnValuesToBeNull(column="duplicate_of"),
         "unique sha256: an exact copy of an earlier file (the first one is kept)"),
    ]
    return [e for e, _ in checks], [d for _, d in checks]


def run_suite(table: pd.DataFrame, cfg: ValidateConfig, min_side: int):
    """Validate ``table`` with GX; return (GX result, {file: [failed check descriptions]}, HTML report)."""
    import great_expectations as gx

    expectations, descriptions = _expectations(gx, cfg, min_side)
    # GX sees the columns it checks; notes (lists) stay in the stage's own table.
    result, html = run_checkpoint(table.drop(columns=["notes"]), expectations)
    by_type_and_column = {(e.expectation_type, e.column): d for e, d in zip(expectations, descriptions)}
    failures: dict[str, list[str]] = {}
    for res in result.results:
        cfg_ = res.expectation_config
        description = by_type_and_column[(cfg_.type, cfg_.kwargs["column"])]
        for item in res.result.get("unexpected_index_list") or []:
            failures.setdefault(item["file"], []).append(description)
    # A row with an error always fails, whatever column GX skipped as null.
    for file, error in zip(table["file"], table["error"]):
        if isinstance(error, str) and file not in failures:
            failures[file] = [descriptions[0]]
    return result, failures, html


def validate(
    raw_dir: Path | str,
    validated_dir: Path | str,
    quarantine_dir: Path | str,
    cfg: ValidateConfig,
    min_side: int,
) -> dict:
    """Run the validate stage; returns the summary written to ``quarantine_dir/report.json``."""
    raw_dir, validated_dir, quarantine_dir = Path(raw_dir), Path(validated_dir), Path(quarantine_dir)
    if not (raw_dir / "manifest.json").is_file():
        raise ValidationFailed(f"{raw_dir / 'manifest.json'}: missing; run the fetch stage first (dvc repro fetch)")
    manifest, skipped = read_manifest(raw_dir)
    for d in (validated_dir, quarantine_dir):
        if d.exists():
            shutil.rmtree(d)  # both are DVC outputs of this stage, rebuilt every run
        d.mkdir(parents=True)

    table = build_table(raw_dir, manifest, cfg)
    result, failures, html = run_suite(table, cfg, min_side)

    quarantined, valid_records = [], []
    for row in table.to_dict("records"):
        row = {k: (None if not isinstance(v, (list, str)) and pd.isna(v) else v) for k, v in row.items()}
        reasons = failures.get(row["file"])
        if not reasons:
            valid_records.append({
                "file": row["file"], "split": row["split"], "sha256": row["sha256"], "width": int(row["width"]),
                "height": int(row["height"]), "format": row["format"], "mode": row["mode"], "notes": row["notes"],
            })
            continue
        target = quarantine_dir / row["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw_dir / row["file"], target)
        entry = {"file": row["file"], "copy": row["file"], "failed": reasons}
        if row["error"]:
            entry["error"] = row["error"]
        if row["duplicate_of"]:
            entry["duplicate_of"] = row["duplicate_of"]
        quarantined.append(entry)
        log.warning("quarantined %s: %s%s", row["file"], "; ".join(reasons),
                    f" ({row['error']})" if row["error"] else "")
    write_json(valid_records, validated_dir / "manifest.json")
    table.to_csv(validated_dir / "table.csv", index=False)

    total = len(table)
    fraction = len(valid_records) / total if total else 0.0
    per_split = {s: sum(r["split"] == s for r in valid_records) for s in ("train", "val")}
    summary = {
        "total": total,
        "valid": len(valid_records),
        "quarantined": len(quarantined),
        "skipped_by_fetch": len(skipped),
        "valid_fraction": round(fraction, 6),
        "min_valid_fraction": cfg.min_valid_fraction,
        "valid_per_split": per_split,
        "normalised": sum(bool(r["notes"]) for r in valid_records),
        "gx_success": bool(result.success),
        "files": quarantined,
        "skipped": skipped,
    }
    write_json(summary, quarantine_dir / "report.json")
    write_json(stable_result(result.to_json_dict()), quarantine_dir / "gx_result.json")
    with atomic_write(quarantine_dir / "report.html", "w", encoding="utf-8") as f:
        f.write(html)

    lost = len(quarantined) + len(skipped)
    log_lost = log.warning if lost else log.info
    log_lost(
        "validation kept %d of %d files (%.1f%%): %d quarantined, %d skipped by fetch, %d normalised; see %s",
        len(valid_records), total + len(skipped), 100 * len(valid_records) / max(total + len(skipped), 1),
        len(quarantined), len(skipped), summary["normalised"], quarantine_dir / "report.json",
    )
    if fraction < cfg.min_valid_fraction:
        raise ValidationFailed(
            f"only {len(valid_records)}/{total} images ({fraction:.1%}) passed validation, below "
            f"validate.min_valid_fraction={cfg.min_valid_fraction}; {len(quarantined)} were quarantined: see "
            f"{quarantine_dir / 'report.json'} and {quarantine_dir / 'report.html'}"
        )
    for split in ("train", "val"):
        if per_split[split] == 0:
            raise ValidationFailed(f"no valid {split} images left; see {quarantine_dir / 'report.json'}")
    return summary
