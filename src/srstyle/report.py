"""`srstyle report` (and the end of `make run`): the results of the pipeline in a screenful.

One short table per task (super-resolution: PSNR/SSIM, gain over bicubic, champion; style transfer: style
and content loss against Gatys optimisation, the artefact checks, speed), where the pictures are, and how to open MLflow and the Prefect UI. Everything is read from
the DVC outputs (no MLflow or torch import: it prints in well under a second); lines stay within ``WIDTH``.
`dvc metrics show` keeps the full tables, `dvc metrics diff` compares commits.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WIDTH = 120
PROMOTING = ("first champion", "promoted", "already champion")
MLFLOW_LOCAL_UI = "http://127.0.0.1:5000"
PREFECT_LOCAL_UI = "http://127.0.0.1:4200"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def is_http(uri: str | None) -> bool:
    return bool(uri) and uri.startswith(("http://", "https://"))


def mlflow_run_url(record: dict, ui_url: str | None = None) -> str | None:
    """The MLflow UI page of a run (``record`` = a mlflow_run.json) when there is a UI to click: a server
    tracking URI (http/https) or an explicit ``ui_url``. None for a local SQLite store."""
    run_id, uri = record.get("run_id"), record.get("tracking_uri")
    base = ui_url or (uri if is_http(uri) else None)
    if not run_id or not base:
        return None
    return f"{base.rstrip('/')}/#/experiments/{record.get('experiment_id')}/runs/{run_id}"


def run_link_markdown(record: dict, ui_url: str | None = None) -> str:
    """A Markdown link to the run when it has a URL, else ``runs:/<id>`` (a local store has no page)."""
    run_id = record.get("run_id")
    if not run_id:
        return "-"
    url = mlflow_run_url(record, ui_url)
    return f"[{run_id[:8]}]({url})" if url else f"`runs:/{run_id}`"


def champions(decisions: dict[str, dict]) -> dict[str, str]:
    """``registered model -> champion version`` after the promotion stage, from decisions.json (in run order:
    a later run's decision sees the earlier ones)."""
    result: dict[str, str] = {}
    for d in decisions.values():
        name = d.get("registered_model")
        if not name:
            continue
        if "champion_after" in d:
            after = d["champion_after"]
        elif d.get("outcome") in PROMOTING:
            after = d.get("version")
        else:
            after = d.get("champion_version")
        if after is not None:
            result[name] = str(after)
    return result


@dataclass
class SRRow:
    run: str
    scale: int | None
    psnr: float | None
    ssim: float | None
    gain: float | None
    champion: str  # "yes (sr-x3 v2)", "no", "-" (not promoted)
    niqe: float | None = None          # no-reference naturalness, lower is better
    vgg: float | None = None           # vgg_distance to HR, lower is better
    perceptual: str = "-"              # holds sr-x<scale>@perceptual? same form as champion
    unseen_gain: float | None = None   # gain on photos outside training and validation (srstyle.data.unseen)


@dataclass
class StyleRow:
    model: str
    style_over_gatys: float | None      # style loss / Gatys' on the same (photo, painting): 1 = as optimisation
    content_over_gatys: float | None
    dark_blobs: float | None            # largest share of dark-blob pixels in one output
    high_freq: float | None             # largest energy ratio at periods < 4 px, output / content
    high_freq_over_gatys: float | None  # the same against Gatys' output for that pair
    ms: float | None
    champion: str = "-"


@dataclass
class Summary:
    root: Path
    sr: list[SRRow] = field(default_factory=list)
    style: list[StyleRow] = field(default_factory=list)
    timing_size: int | None = None
    pictures: list[tuple[str, str]] = field(default_factory=list)
    tracking_uri: str | None = None
    prefect_api: str | None = None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _verdict(decisions: dict, key: str) -> str:
    """"yes (<model> v<n>)", "no" or "-" (never promoted) for one entry of a decisions.json."""
    d = decisions.get(key, {})
    name, version = d.get("registered_model"), d.get("version")
    if name is None:
        return "-"
    return f"yes ({name} v{version})" if champions(decisions).get(name) == str(version) else "no"


def collect(root: Path, runs: dict[str, Any] | None = None, styles: list[str] | None = None) -> Summary:
    """Read the finished pipeline's outputs under ``root`` (runs/styles default to params.yaml's)."""
    root = Path(root)
    timing_size = None
    if runs is None or styles is None:
        from .config import load_params

        params = load_params(root / "params.yaml")
        runs = dict(params.runs) if runs is None else runs
        styles = list(params.style.fast.styles) if styles is None else styles
        timing_size = params.style.evaluate.timing_size
    s = Summary(root=root, timing_size=timing_size)
    decisions = read_json(root / "data/registry/decisions.json")
    perceptual = read_json(root / "data/registry/perceptual_decisions.json")  # sr-x<scale>@perceptual
    by_scale: dict[int | None, list[SRRow]] = {}
    refs: dict[int | None, dict] = {}  # a scale's bicubic and HR figures, the same in every run's metrics
    for run, spec in runs.items():
        m = read_json(root / "data/eval" / run / "metrics.json")
        verdict = _verdict(decisions, run)
        scale = m.get("scale") or (spec.get("scale") if isinstance(spec, dict) else getattr(spec, "scale", None))
        by_scale.setdefault(scale, []).append(SRRow(
            run, scale, _num(m.get("psnr")), _num(m.get("ssim")), _num(m.get("psnr_gain")), verdict,
            _num(m.get("niqe")), _num(m.get("vgg_distance")), _verdict(perceptual, run), _num(m.get("unseen_psnr_gain"))))
        if m and scale not in refs:
            refs[scale] = m
        if (root / "data/eval" / run / "comparison.png").is_file():
            s.pictures.append((f"data/eval/{run}/comparison.png", f"{run}: LR | bicubic | model | HR"))
    for scale, rows in by_scale.items():  # per scale: bicubic, the runs, the HR photos' own NIQE
        m = refs.get(scale)
        if m:
            s.sr.append(SRRow("bicubic", scale, _num(m.get("bicubic_psnr")), _num(m.get("bicubic_ssim")), 0.0, "-",
                              _num(m.get("bicubic_niqe")), _num(m.get("bicubic_vgg_distance")),
                              unseen_gain=0.0 if "unseen_psnr_gain" in m else None))
        s.sr += rows
        if m and _num(m.get("hr_niqe")) is not None:
            s.sr.append(SRRow("HR (ground truth)", scale, None, None, None, "-", _num(m.get("hr_niqe")), 0.0))
    sm = read_json(root / "data/style/eval/metrics.json")
    style_decisions = read_json(root / "data/style/registry/decisions.json")  # promote_style: style-<name>, style-meta
    def style_row(label: str, prefix: str, ms_key: str, registered: str) -> StyleRow:
        return StyleRow(label, _num(sm.get(f"{prefix}_style_loss_over_gatys")),
                        _num(sm.get(f"{prefix}_content_loss_over_gatys")), _num(sm.get(f"{prefix}_max_dark_blob_fraction")),
                        _num(sm.get(f"{prefix}_max_high_freq_ratio")), _num(sm.get(f"{prefix}_max_high_freq_over_gatys")),
                        _num(sm.get(ms_key)),
                        _verdict(style_decisions, registered))

    for style in styles:
        s.style.append(style_row(f"fast:{style}", f"fast_{style}", f"fast_{style}_ms_512", f"style-{style}"))
    s.style.append(style_row("meta (training paintings)", "meta_train", "meta_ms_512", "style-meta"))
    s.style.append(style_row("meta (held-out paintings)", "meta_held_out", "meta_ms_512", "style-meta"))
    if sm:
        s.style.append(StyleRow("gatys (reference)", 1.0, 1.0, _num(sm.get("gatys_max_dark_blob_fraction")),
                                _num(sm.get("gatys_max_high_freq_ratio")), 1.0, None))
    for rel, what in (("data/compare/all_models.png", "every SR run on the same crop"),
                      ("data/style/eval/grid_fast.png", "fast style nets"),
                      ("data/style/eval/grid_meta.png", "meta network"),
                      ("data/style/eval/grid_gatys.png", "Gatys reference"),
                      ("data/plots/curves.png", "training curves of every run")):
        if (root / rel).is_file():
            s.pictures.append((rel, what))
    records = [read_json(p) for p in sorted((root / "data").glob("**/mlflow_run.json"))]
    uris = {r.get("tracking_uri") for r in records if r.get("tracking_uri")}
    s.tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or (sorted(uris)[0] if uris else None)
    s.prefect_api = os.environ.get("PREFECT_API_URL")
    return s


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(headers: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(headers), indent + "  ".join("-" * w for w in widths)] + [line(r) for r in rows]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render(s: Summary, width: int = WIDTH) -> str:
    out = [f"srstyle results: {s.root}", ""]
    out.append("Super-resolution (validation split; PSNR/SSIM on Y, BT.601; gain = PSNR - bicubic PSNR)")
    out.append("  unseen: the gain on photos outside training and validation; NIQE (no reference), VGG dist. (to HR):")
    out.append("  lower is better; @perceptual: sr-x<s>@perceptual; champion?: @champion (PSNR)")
    rows = [[_clip(r.run, 24), f"x{r.scale}" if r.scale else "-", _fmt(r.psnr, ".2f"), _fmt(r.ssim, ".4f"),
             _fmt(r.gain, "+.2f"), _fmt(r.unseen_gain, "+.2f"), _fmt(r.niqe, ".2f"), _fmt(r.vgg, ".4f"), r.perceptual,
             r.champion] for r in s.sr]
    out += _table(["model", "scale", "PSNR dB", "SSIM", "gain dB", "unseen", "NIQE", "VGG dist.", "@perceptual",
                   "champion?"], rows)
    if any(r.psnr is None and r.run != "HR (ground truth)" for r in s.sr):
        out.append("  (- = not evaluated yet: `dvc repro`)")
    out += ["", "Style transfer (held-out photos; style and content loss / Gatys' on the same pair: 1 = as optimisation,",
            "lower is better; dark %: dark-blob pixels of the worst output; HF: energy at periods < 4 px of the worst",
            "output / the photo's and / Gatys' output's)"]
    ms = f"ms/{s.timing_size}px" if s.timing_size else "ms/image"
    rows = [[_clip(r.model, 30), _fmt(r.style_over_gatys, ".3f"), _fmt(r.content_over_gatys, ".3f"),
             _fmt(None if r.dark_blobs is None else 100 * r.dark_blobs, ".3f"), _fmt(r.high_freq, ".2f"),
             _fmt(r.high_freq_over_gatys, ".2f"), _fmt(r.ms, ".1f"), r.champion] for r in s.style]
    out += _table(["model", "style", "content", "dark %", "HF/photo", "HF/Gatys", ms, "champion?"], rows)
    out += ["", "Pictures"]
    pics = s.pictures or [("(none yet)", "run `dvc repro`")]
    pw = max(len(p) for p, _ in pics)
    out += [f"  {p.ljust(pw)}  {what}" for p, what in pics]
    out.append("  all plots, offline: `dvc plots show` -> dvc_plots/index.html; experiments: `dvc plots diff`")
    out += ["", "Open"]
    if is_http(s.tracking_uri):
        out.append(f"  MLflow:  {s.tracking_uri}  (runs; registry: sr-x<scale>@champion)")
    else:
        out.append(f"  MLflow:  `make mlflow-server`, then {MLFLOW_LOCAL_UI}  (store: {s.tracking_uri or 'mlruns.db'})")
    prefect = s.prefect_api[:-4] if s.prefect_api and s.prefect_api.endswith("/api") else s.prefect_api
    out.append(f"  Prefect: {prefect}" if prefect else f"  Prefect: `make prefect-ui`, then {PREFECT_LOCAL_UI}"
               "  (flows: `make retrain-now`)")
    out.append("  Every metric: `dvc metrics show`; against the last commit: `dvc metrics diff`")
    return "\n".join(_clip(line, width) for line in out) + "\n"


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `report` on the CLI's subparsers."""
    p = sub.add_parser("report", help="the pipeline's results in a screenful (what `make run` ends with)")
    p.add_argument("--root", default=None, help="project folder (default: SRSTYLE_ROOT or the working directory)")
    p.add_argument("--width", type=int, default=WIDTH, help=f"maximum line width (default {WIDTH})")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from .paths import project_root

    print(render(collect(project_root(args.root)), args.width), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srstyle.report")
    add_parser(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["report", *(argv or [])]))


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
