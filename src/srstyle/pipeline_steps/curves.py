"""The `curves` step: every run's training curves overlaid, one table per metric (runs as lines).

DVC plots them from ``data/plots/<metric>.csv`` (long format: run, step, value; the template colours by
run, and `dvc plots diff` dashes by revision); ``data/plots/curves.png`` is the same in matplotlib for people
who do not open DVC's HTML. SR runs come from ``runs`` (any scale, Y or RGB), style runs are ``fast:<style>``
and ``meta``.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from ..config import Params
from ..io import atomic_write

log = logging.getLogger(__name__)

# file stem, title, task ("sr" or "style"), column of the trainings' curve.csv
CURVES = (
    ("sr_train_loss", "SR training loss", "sr", "train_loss"),
    ("sr_val_psnr", "SR validation PSNR (Y, dB)", "sr", "val_psnr"),
    ("style_loss", "Style loss (Gram) during training", "style", "loss_style"),
    ("style_content_loss", "Content loss during training", "style", "loss_content"),
)


def curve_files(params: Params, root: Path) -> dict[str, dict[str, Path]]:
    """``{"sr": {run: curve.csv}, "style": {"fast:<style>"|"meta": curve.csv}}``."""
    style = root / "data" / "style" / "models"
    styles = {f"fast:{s}": style / "fast" / s / "curve.csv" for s in params.style.fast.styles}
    styles["meta"] = style / "meta" / "curve.csv"
    return {"sr": {run: root / "data" / "models" / run / "curve.csv" for run in params.runs}, "style": styles}


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_series(files: dict[str, Path], column: str) -> dict[str, list[tuple[int, float]]]:
    """``run -> [(step, value)]`` of one column; rows without a value (e.g. no validation at that step)
    and runs without the column (SRGAN logs other losses) are left out."""
    series = {}
    for run, path in files.items():
        if not path.is_file():
            continue
        with open(path, newline="", encoding="utf-8") as f:
            points = [(int(float(row["step"])), v) for row in csv.DictReader(f)
                      if (v := _number(row.get(column))) is not None]
        if points:
            series[run] = points
    return series


def write_long_csv(series: dict[str, list[tuple[int, float]]], column: str, path: Path) -> None:
    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "step", column])
        for run, points in series.items():
            writer.writerows([run, step, f"{value:.6g}"] for step, value in points)


def plot_png(tables: list[tuple[str, str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for ax, (title, column, series) in zip(axes.flat, tables):
        for run, points in series.items():
            ax.plot([s for s, _ in points], [v for _, v in points], label=run, linewidth=1.2)
        ax.set(title=title, xlabel="step", ylabel=column)
        if column.startswith("loss") or column.endswith("loss"):
            if all(v > 0 for pts in series.values() for _, v in pts) and series:
                ax.set_yscale("log")
        if series:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def collect_curves(params: Params, root: Path) -> dict[str, int]:
    """Write data/plots/<stem>.csv for each of CURVES and data/plots/curves.png; returns rows per table."""
    files, out = curve_files(params, root), root / "data" / "plots"
    tables, counts = [], {}
    for stem, title, task, column in CURVES:
        series = read_series(files[task], column)
        write_long_csv(series, column, out / f"{stem}.csv")
        tables.append((title, column, series))
        counts[stem] = sum(len(p) for p in series.values())
    plot_png(tables, out / "curves.png")
    log.info("curves: %s -> %s", counts, out)
    return counts
