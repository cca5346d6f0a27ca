"""The retrain flow's Markdown report (a Prefect artifact): metrics per run, promotion decisions, the
style-transfer table, what each stage did, MLflow runs linked by URL when the tracking URI is a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from srstyle.report import read_json as _read
from srstyle.report import run_link_markdown

STYLE_DIR = Path("data/style")


def style_runs(root: Path, styles: list[str]) -> dict[str, dict]:
    """The MLflow run record (mlflow_run.json) of each style training: ``fast:<style>`` and ``meta``."""
    dirs = {f"fast:{s}": root / STYLE_DIR / "models/fast" / s for s in styles}
    dirs["meta"] = root / STYLE_DIR / "models/meta"
    return {name: _read(d / "mlflow_run.json") for name, d in dirs.items()}


def _num(value: Any, fmt: str) -> str:
    return "-" if not isinstance(value, (int, float)) else format(value, fmt)


def style_section(root: Path, styles: list[str], ui_url: str | None, timing_size: int | None) -> tuple[list[str], set]:
    m = _read(root / STYLE_DIR / "eval/metrics.json")
    onnx = _read(root / STYLE_DIR / "export_style_onnx.json")
    records = style_runs(root, styles)
    ms = f"ms/image ({timing_size}²)" if timing_size else "ms/image"
    lines = ["", "## Style transfer (held-out content photos; Gram style and content loss over a Gatys "
             "optimisation's on the same pair: 1 = as optimisation, lower is better)", "",
             f"| model | style loss / Gatys | content loss / Gatys | dark-blob pixels (worst) | "
             f"energy < 4 px / photo's (worst) | SSIM to content | {ms} | ONNX max diff (0-255) | train steps | MLflow run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    uris = set()
    rows = [(f"fast:{style}", f"fast_{style}", f"fast_{style}_ms_512", f"fast_{style}_max_abs_diff_255",
             STYLE_DIR / "models/fast" / style) for style in styles]
    rows += [("meta (held-out paintings)", "meta_held_out", "meta_ms_512", "meta_max_abs_diff_255", STYLE_DIR / "models/meta"),
             ("meta (training paintings)", "meta_train", "meta_ms_512", "meta_max_abs_diff_255", STYLE_DIR / "models/meta")]
    for name, prefix, speed, diff, model_dir in rows:
        t = _read(root / model_dir / "train_metrics.json")
        record = records["meta" if name.startswith("meta") else name]
        uris.add(record.get("tracking_uri", "?"))
        lines.append(f"| {name} | {_num(m.get(f'{prefix}_style_loss_over_gatys'), '.3f')} | "
                     f"{_num(m.get(f'{prefix}_content_loss_over_gatys'), '.3f')} | "
                     f"{_num(m.get(f'{prefix}_max_dark_blob_fraction'), '.2%')} | "
                     f"{_num(m.get(f'{prefix}_max_high_freq_ratio'), '.2f')} | {_num(m.get(f'{prefix}_ssim_to_content'), '.4f')} | "
                     f"{_num(m.get(speed), '.1f')} | {_num(onnx.get(diff), '.2g')} | "
                     f"{t.get('steps', '-')} | {run_link_markdown(record, ui_url)} |")
    lines += ["", f"Gatys reference: max relative loss increase during optimisation "
                  f"{_num(m.get('gatys_max_relative_loss_increase'), '.3g')} (0 = the loss never went up), "
                  f"{_num(m.get('gatys_seconds_per_image'), '.2f')} s per image."]
    return lines, uris


def flow_report(root: Path, runs: list[str], steps: list[dict], ui_url: str | None, changes: dict,
                styles: list[str] | None = None, timing_size: int | None = None) -> str:
    lines = ["# Retrain report", "", f"Project: `{root}`", ""]
    if changes:
        lines += ["Parameters of this run (params.yaml restored afterwards; dvc.lock records them): "
                  + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in changes.items()), ""]
    lines += ["## Validation metrics (Y channel, BT.601; bicubic baseline)", "",
              "| run | PSNR (dB) | SSIM | bicubic PSNR | bicubic SSIM | gain (dB) | train steps | MLflow run |",
              "|---|---|---|---|---|---|---|---|"]
    uris = set()
    for run in runs:
        m = _read(root / "data/eval" / run / "metrics.json")
        t = _read(root / "data/models" / run / "train_metrics.json")
        record = _read(root / "data/models" / run / "mlflow_run.json")
        uris.add(record.get("tracking_uri", "?"))
        lines.append(f"| {run} | {_num(m.get('psnr'), '.2f')} | {_num(m.get('ssim'), '.4f')} | "
                     f"{_num(m.get('bicubic_psnr'), '.2f')} | {_num(m.get('bicubic_ssim'), '.4f')} | "
                     f"{_num(m.get('psnr_gain'), '+.2f')} | {t.get('steps', '-')} | {run_link_markdown(record, ui_url)} |")
    decisions = _read(root / "data/registry/decisions.json")
    lines += ["", "## Promotion (MLflow registry, alias `champion`)", "",
              "| run | registered model | version | decision | PSNR | champion before | champion PSNR | margin (dB) |",
              "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        d = decisions.get(run, {})
        lines.append(f"| {run} | {d.get('registered_model', '-')} | {d.get('version', '-')} | **{d.get('outcome', '-')}** | "
                     f"{_num(d.get('psnr'), '.4f')} | {d.get('champion_version') or '-'} | "
                     f"{_num(d.get('champion_psnr'), '.4f')} | {d.get('margin_db', '-')} |")
    if styles is not None:
        style_lines, style_uris = style_section(root, styles, ui_url, timing_size)
        lines += style_lines
        uris |= style_uris
    lines += ["", "## Stages (from DVC: dvc.lock before and after each stage)", "",
              "| stage | result | seconds |", "|---|---|---|"]
    for s in steps:
        lines.append(f"| {s['stage']} | {'ran' if s['ran'] else 'up to date (DVC)'} | {s['seconds']} |")
    bento = next((s.get("bento") for s in steps if s.get("bento")), None)
    if bento:
        lines += ["", f"Bento: `{bento}` (`bentoml serve {bento}`)"]
    lines += ["", "MLflow tracking URI: " + ", ".join(f"`{u}`" for u in sorted(uris))]
    return "\n".join(lines) + "\n"
