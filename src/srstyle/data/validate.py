"""The validate stage: a Great Expectations suite over a per-image table, with quarantine.

Each raw image becomes one row (file, sha256, format, mode, size, bytes, decodes?, duplicate_of). A GX
suite checks the rows; every failing file is *copied* to the quarantine folder (the originals are never
touched) and named in a JSON report beside GX's own HTML rendering of the result. Valid files are listed
in ``validated/manifest.json`` for the next stages. The stage fails only when the valid fraction drops
below ``validate.min_valid_fraction``.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import ValidateConfig
from ..io import ImageError, atomic_write, decode_oriented, open_image, read_json, write_json
from .download import sha256_file

log = logging.getLogger(__name__)


class ValidationFailed(RuntimeError):
    """Too few valid images; the message points at the quarantine report."""


@dataclass(frozen=True)
class Check:
    """One expectation of the suite and the human wording used in the report."""

    name: str
    description: str


def image_row(path: Path, file: str, max_pixels: int) -> dict:
    """Facts about one file, gathered without trusting it (header checked before decoding)."""
    row = {
        "file": file,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "format": None,
        "mode": None,
        "width": None,
        "height": None,
        "min_side": None,
        "pixels": None,
        "decodes": False,
        "error": None,
    }
    try:
        with open_image(path, max_pixels=2**62) as img:
            row["format"], row["mode"] = img.format, img.mode
            w, h = img.size
            row["pixels"] = w * h
            if w * h > max_pixels:
                # Never decode a would-be bomb: the size cap expectation rejects it.
                row["decodes"] = None
                row["error"] = f"declared size {w}x{h} exceeds max_pixels={max_pixels}; not decoded"
            else:
                oriented = decode_oriented(img, path)
                w, h = oriented.size  # EXIF rotation swaps width and height
                row["decodes"] = True
            row["width"], row["height"], row["min_side"] = w, h, min(w, h)
    except ImageError as exc:
        row["error"] = str(exc).removeprefix(f"{path}: ")
    return row


def build_table(raw_dir: Path, manifest: list[dict], max_pixels: int) -> pd.DataFrame:
    rows = []
    for entry in manifest:
        row = image_row(raw_dir / entry["file"], entry["file"], max_pixels)
        row["split"] = entry["split"]
        rows.append(row)
    table = pd.DataFrame(rows)
    first_seen: dict[str, str] = {}
    duplicate_of = []
    for file, digest in zip(table["file"], table["sha256"]):
        duplicate_of.append(first_seen.get(digest))
        first_seen.setdefault(digest, file)
    table["duplicate_of"] = pd.Series(duplicate_of, dtype=object)
    return table


def _suite(gx, cfg: ValidateConfig, min_side: int):
    E = gx.expectations
    suite = gx.ExpectationSuite(name="raw_images")
    checks = [
        (E.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]),
         "decodes: the file is a complete image PIL can read"),
        (E.ExpectColumnValuesToBeInSet(column="format", value_set=cfg.allowed_formats),
         f"format in {cfg.allowed_formats} (validate.allowed_formats)"),
        (E.ExpectColumnValuesToBeInSet(column="mode", value_set=cfg.allowed_modes),
         f"mode in {cfg.allowed_modes} (validate.allowed_modes)"),
        (E.ExpectColumnValuesToBeBetween(column="min_side", min_value=min_side),
         f"shorter side >= {min_side} px, the HR patch size (patches.hr_size)"),
        (E.ExpectColumnValuesToBeBetween(column="pixels", min_value=1, max_value=cfg.max_pixels),
         f"width*height <= {cfg.max_pixels} (validate.max_pixels)"),
        (E.ExpectColumnValuesToBeBetween(column="bytes", min_value=1, max_value=cfg.max_bytes),
         f"1 <= file size <= {cfg.max_bytes} bytes (validate.max_bytes)"),
        (E.ExpectColumnValuesToBeNull(column="duplicate_of"),
         "unique sha256: an exact copy of an earlier file (the first one is kept)"),
    ]
    for expectation, _ in checks:
        suite.add_expectation(expectation)
    return suite, [d for _, d in checks]


def run_suite(table: pd.DataFrame, cfg: ValidateConfig, min_side: int):
    """Validate ``table`` with GX; return (GX result, {file: [failed check descriptions]})."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("images").add_dataframe_asset("table").add_batch_definition_whole_dataframe("all")
    )
    suite, descriptions = _suite(gx, cfg, min_side)
    suite = context.suites.add(suite)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": table})
    result = batch.validate(
        suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["file"]}
    )
    by_type_and_column = {
        (e.expectation_type, e.column): d for e, d in zip(suite.expectations, descriptions)
    }
    failures: dict[str, list[str]] = {}
    for res in result.results:
        cfg_ = res.expectation_config
        description = by_type_and_column[(cfg_.type, cfg_.kwargs["column"])]
        for item in res.result.get("unexpected_index_list") or []:
            failures.setdefault(item["file"], []).append(description)
    return result, failures


def _render_html(result) -> str:
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))


def validate(
    raw_dir: Path | str,
    validated_dir: Path | str,
    quarantine_dir: Path | str,
    cfg: ValidateConfig,
    min_side: int,
) -> dict:
    """Run the validate stage; returns the summary written to ``quarantine_dir/report.json``."""
    raw_dir, validated_dir, quarantine_dir = Path(raw_dir), Path(validated_dir), Path(quarantine_dir)
    manifest_path = raw_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ValidationFailed(f"{manifest_path}: missing; run the fetch stage first (dvc repro fetch)")
    manifest = read_json(manifest_path)
    for d in (validated_dir, quarantine_dir):
        if d.exists():
            shutil.rmtree(d)  # both are DVC outputs of this stage, rebuilt every run
        d.mkdir(parents=True)

    table = build_table(raw_dir, manifest, cfg.max_pixels)
    result, failures = run_suite(table, cfg, min_side)

    quarantined = []
    for row in table.to_dict("records"):
        reasons = failures.get(row["file"])
        if not reasons:
            continue
        target = quarantine_dir / row["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(raw_dir / row["file"], target)
        entry = {"file": row["file"], "quarantined_copy": str(target), "failed": reasons}
        if row["error"]:
            entry["error"] = row["error"]
        if row["duplicate_of"]:
            entry["duplicate_of"] = row["duplicate_of"]
        quarantined.append(entry)
        log.warning("quarantined %s: %s", row["file"], "; ".join(reasons))

    valid = table[~table["file"].isin(failures)]
    valid_records = [
        {"file": r["file"], "split": r["split"], "sha256": r["sha256"], "width": int(r["width"]), "height": int(r["height"])}
        for r in valid.to_dict("records")
    ]
    write_json(valid_records, validated_dir / "manifest.json")
    table.to_csv(validated_dir / "table.csv", index=False)

    total = len(table)
    fraction = len(valid) / total if total else 0.0
    summary = {
        "total": total,
        "valid": len(valid),
        "quarantined": len(quarantined),
        "valid_fraction": round(fraction, 6),
        "min_valid_fraction": cfg.min_valid_fraction,
        "valid_per_split": {s: int((valid["split"] == s).sum()) for s in ("train", "val")},
        "gx_success": bool(result.success),
        "files": quarantined,
    }
    write_json(summary, quarantine_dir / "report.json")
    write_json(result.to_json_dict(), quarantine_dir / "gx_result.json")
    with atomic_write(quarantine_dir / "report.html", "w", encoding="utf-8") as f:
        f.write(_render_html(result))

    if fraction < cfg.min_valid_fraction:
        raise ValidationFailed(
            f"only {len(valid)}/{total} images ({fraction:.1%}) passed validation, below "
            f"validate.min_valid_fraction={cfg.min_valid_fraction}; see {quarantine_dir / 'report.json'} "
            f"and {quarantine_dir / 'report.html'}"
        )
    for split in ("train", "val"):
        if summary["valid_per_split"][split] == 0:
            raise ValidationFailed(f"no valid {split} images left; see {quarantine_dir / 'report.json'}")
    return summary
