"""Prefect flow `retrain`: fetch -> validate -> patches -> train@<run> -> evaluate@<run> -> export_onnx@<run>
-> promote, then (``style=True``) fetch_style -> validate_style -> train_style@<style> -> train_meta ->
evaluate_style -> export_style_onnx, then package; one task per DVC stage.

Every task runs ``dvc repro --single-item <stage>`` in the project, so DVC's lock file and cache decide what
actually reruns (an unchanged stage is skipped in a second), the commands are the ones `dvc repro` runs by
hand, and no training or evaluation logic lives here. Prefect adds what DVC does not have: a schedule, retries
with backoff on the network-facing fetch, a concurrency limit on the GPU-bound training tasks (tag ``gpu``),
logs and a Markdown report per run in the UI.

Parameters (scale, models, overrides) are applied the way ``dvc exp run -S key=value`` applies them in the
workspace: written into params.yaml (comments kept, validated against the schema first), then reproduced.
We use ``dvc repro <stage>`` rather than ``dvc exp run`` because an experiment run reproduces the whole
pipeline as one command (one opaque task, no per-stage retries or gpu tag) and needs a git commit to
attach to; the resulting params.yaml + dvc.lock are exactly what `dvc exp run -S` would have left in the
workspace, so ``git diff`` / ``dvc params diff`` show what a scheduled run changed.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
REPORT_KEY = "retrain-report"
GPU_TAG = "gpu"


class StageFailed(RuntimeError):
    pass


def _env() -> dict[str, str]:
    """The stages run with this interpreter's environment (its venv first on PATH), never a stray root."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SRSTYLE_ROOT", None)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    return env


def run_cmd(cmd: list[str], root: Path) -> str:
    logger = get_run_logger()
    logger.info("$ %s  (in %s)", " ".join(cmd), root)
    proc = subprocess.run(cmd, cwd=root, env=_env(), capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise StageFailed(f"{' '.join(cmd)} exited with {proc.returncode}:\n{output[-4000:]}")
    logger.info(output[-4000:])
    return output


def repro(stage: str, root: Path) -> dict:
    """`dvc repro --single-item <stage>`: runs it only when its deps/params changed. Returns what happened."""
    t0 = time.perf_counter()
    out = run_cmd(["dvc", "repro", "--single-item", stage], root)
    ran = f"Running stage '{stage}'" in out
    return {"stage": stage, "ran": ran, "seconds": round(time.perf_counter() - t0, 2)}


# --- tasks: one per DVC stage -------------------------------------------------------------------------------

@task(name="fetch", retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10), retry_jitter_factor=0.5)
def fetch(root: Path) -> dict:
    """The only stage that touches the network (url sources): retried with exponential backoff."""
    return repro("fetch", root)


@task(name="validate")
def validate(root: Path) -> dict:
    return repro("validate", root)


@task(name="patches")
def patches(root: Path) -> dict:
    return repro("patches", root)


@task(name="train", tags=[GPU_TAG], task_run_name="train@{run}")
def train(root: Path, run: str) -> dict:
    """GPU-bound: tagged ``gpu`` so the tag concurrency limit caps how many run at once across flow runs."""
    return repro(f"train@{run}", root)


@task(name="evaluate", task_run_name="evaluate@{run}")
def evaluate(root: Path, run: str) -> dict:
    return repro(f"evaluate@{run}", root)


@task(name="export_onnx", task_run_name="export_onnx@{run}")
def export_onnx(root: Path, run: str) -> dict:
    return repro(f"export_onnx@{run}", root)


@task(name="promote")
def promote(root: Path) -> dict:
    return repro("promote", root)


# --- the style-transfer chain (dvc.yaml: fetch_style ... export_style_onnx) ---------------------------------

@task(name="fetch_style", retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10),
      retry_jitter_factor=0.5)
def fetch_style(root: Path) -> dict:
    """Content photos and paintings: network-facing with url sources (COCO), so retried like ``fetch``."""
    return repro("fetch_style", root)


@task(name="validate_style")
def validate_style(root: Path) -> dict:
    return repro("validate_style", root)


@task(name="train_style", tags=[GPU_TAG], task_run_name="train_style@{style}")
def train_style(root: Path, style: str) -> dict:
    """Johnson's fast network for one painting of ``style.fast.styles``: GPU-bound, tagged ``gpu``."""
    return repro(f"train_style@{style}", root)


@task(name="train_meta", tags=[GPU_TAG], task_run_name="train_meta")
def train_meta(root: Path) -> dict:
    """The meta network (any painting, one forward pass): GPU-bound, tagged ``gpu``."""
    return repro("train_meta", root)


@task(name="evaluate_style")
def evaluate_style(root: Path) -> dict:
    return repro("evaluate_style", root)


@task(name="export_style_onnx")
def export_style_onnx(root: Path) -> dict:
    return repro("export_style_onnx", root)


@task(name="package")
def package(root: Path, build_bento: bool) -> dict:
    """What `make package` does: the champion ONNX files out of the registry, then (optionally) `bentoml build`."""
    t0 = time.perf_counter()
    run_cmd([sys.executable, "-m", "srstyle.cli", "export-champions", "--out", "serve_models"], root)
    files = sorted(p.name for p in (root / "serve_models").glob("*.onnx"))
    bento = None
    if build_bento:
        out = run_cmd(["bentoml", "build", "-f", "bentofile.yaml", "--output", "tag"], root)
        bento = next((line.split("__tag__:", 1)[1].strip() for line in out.splitlines() if "__tag__:" in line), None)
    return {"stage": "package", "ran": True, "seconds": round(time.perf_counter() - t0, 2), "files": files,
            "bento": bento}


@task(name="dvc-push", retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=10))
def push(root: Path, remote: str | None) -> dict:
    t0 = time.perf_counter()
    run_cmd(["dvc", "push"] + (["-r", remote] if remote else []), root)
    return {"stage": "dvc push", "ran": True, "seconds": round(time.perf_counter() - t0, 2)}


@task(name="apply-params")
def apply_params(root: Path, scale: int | None, models: list[str] | None, overrides: dict[str, Any] | None) -> dict:
    """Write the flow's parameters into params.yaml (like `dvc exp run -S`), validated before writing."""
    changes = params_changes(root, scale, models, overrides)
    if changes:
        get_run_logger().info("params.yaml: %s", changes)
    return changes


def params_changes(root: Path, scale: int | None, models: list[str] | None, overrides: dict[str, Any] | None) -> dict:
    from ruamel.yaml import YAML

    from srstyle.config import parse_params

    yaml = YAML()  # round-trip: comments and key order of params.yaml survive
    yaml.width = 4096
    path = root / "params.yaml"
    doc = yaml.load(path.read_text(encoding="utf-8"))
    changes: dict[str, Any] = {}
    if scale is not None or models:
        current = {name: (spec["model"], spec["scale"]) for name, spec in doc["runs"].items()}
        wanted_models = list(models) if models else list(dict.fromkeys(m for m, _ in current.values()))
        wanted_scales = [scale] if scale is not None else sorted({s for _, s in current.values()})
        runs = {f"{m}_x{s}": {"model": m, "scale": s} for m in wanted_models for s in wanted_scales}
        if runs != {k: dict(v) for k, v in doc["runs"].items()}:
            doc["runs"].clear()
            doc["runs"].update(runs)
            changes["runs"] = runs
    for key, value in (overrides or {}).items():
        node = doc
        parts = key.split(".")
        for part in parts[:-1]:
            if part not in node:
                node[part] = {}
            node = node[part]
        if node.get(parts[-1]) != value:
            node[parts[-1]] = value
            changes[key] = value
    if not changes:
        return {}
    buf = io.StringIO()
    yaml.dump(doc, buf)
    import yaml as pyyaml

    parse_params(pyyaml.safe_load(buf.getvalue()), path)  # a bad key fails here, naming it, before any stage
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return changes


def ensure_gpu_limit(slots: int) -> dict:
    """Create the ``gpu`` tag concurrency limit if the server has none (operators may change it in the UI or
    with `prefect concurrency-limit create gpu N`; an existing limit is left as they set it)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_concurrency_limit_by_tag(GPU_TAG)
        except Exception:  # noqa: BLE001 - ObjectNotFound when the tag has no limit yet
            client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=slots)
            limit = client.read_concurrency_limit_by_tag(GPU_TAG)
        return {"tag": limit.tag, "limit": limit.concurrency_limit}


# --- the report -------------------------------------------------------------------------------------------

def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def run_link(record: dict, ui_url: str | None) -> str:
    """A clickable MLflow link when there is a UI to click (a server URI or ``mlflow_ui_url``), else the id."""
    run_id, uri = record.get("run_id"), record.get("tracking_uri", "")
    if not run_id:
        return "-"
    base = ui_url or (uri if uri.startswith(("http://", "https://")) else None)
    if base:
        return f"[{run_id[:8]}]({base.rstrip('/')}/#/experiments/{record.get('experiment_id')}/runs/{run_id})"
    return f"`runs:/{run_id}`"


STYLE_DIR = Path("data/style")


def style_runs(root: Path, styles: list[str]) -> dict[str, dict]:
    """The MLflow run record (mlflow_run.json) of each style training: ``fast:<style>`` and ``meta``."""
    dirs = {f"fast:{s}": root / STYLE_DIR / "models/fast" / s for s in styles}
    dirs["meta"] = root / STYLE_DIR / "models/meta"
    return {name: _read(d / "mlflow_run.json") for name, d in dirs.items()}


def _num(value: Any, fmt: str) -> str:
    return "-" if not isinstance(value, (int, float)) else format(value, fmt)


def style_report(root: Path, styles: list[str], ui_url: str | None, timing_size: int | None) -> tuple[list[str], set]:
    """The "Style transfer" section: data/style/eval/metrics.json, the ONNX parity report, MLflow runs."""
    m = _read(root / STYLE_DIR / "eval/metrics.json")
    onnx = _read(root / STYLE_DIR / "export_style_onnx.json")
    records = style_runs(root, styles)
    ms = f"ms/image ({timing_size}²)" if timing_size else "ms/image"
    lines = ["", "## Style transfer (held-out content photos; Gram style loss, lower is better)", "",
             f"| model | style loss / baseline | baseline | style loss / Gatys | SSIM to content | {ms} "
             "| ONNX max diff (0-255) | train steps | MLflow run |",
             "|---|---|---|---|---|---|---|---|---|"]
    uris = set()
    rows = [(f"fast:{style}", f"fast_{style}_style_loss_ratio_to_untrained", "untrained net",
             f"fast_{style}_style_loss_over_gatys", f"fast_{style}_ssim_to_content", f"fast_{style}_ms_512",
             f"fast_{style}_max_abs_diff_255", STYLE_DIR / "models/fast" / style) for style in styles]
    rows.append(("meta (held-out paintings)", "meta_held_out_style_loss_ratio_to_unstyled", "unstyled content",
                 "meta_held_out_style_loss_over_gatys", "meta_held_out_ssim_to_content", "meta_ms_512",
                 "meta_max_abs_diff_255", STYLE_DIR / "models/meta"))
    for name, ratio, baseline, gatys, ssim, speed, diff, model_dir in rows:
        t = _read(root / model_dir / "train_metrics.json")
        record = records["meta" if name.startswith("meta") else name]
        uris.add(record.get("tracking_uri", "?"))
        lines.append(f"| {name} | {_num(m.get(ratio), '.4f')} | {baseline} | {_num(m.get(gatys), '.3f')} | "
                     f"{_num(m.get(ssim), '.4f')} | {_num(m.get(speed), '.1f')} | {_num(onnx.get(diff), '.2g')} | "
                     f"{t.get('steps', '-')} | {run_link(record, ui_url)} |")
    lines.append(f"| meta (training paintings) | {_num(m.get('meta_train_style_loss_ratio_to_unstyled'), '.4f')} | "
                 f"unstyled content | - | {_num(m.get('meta_train_ssim_to_content'), '.4f')} | | | | |")
    lines += ["", f"Gatys reference: max relative loss increase during optimisation "
                  f"{_num(m.get('gatys_max_relative_loss_increase'), '.3g')} (0 = the loss never went up), "
                  f"{_num(m.get('gatys_seconds_per_image'), '.2f')} s per image."]
    return lines, uris


def report(root: Path, runs: list[str], steps: list[dict], ui_url: str | None, changes: dict,
           styles: list[str] | None = None, timing_size: int | None = None) -> str:
    lines = ["# Retrain report", "", f"Project: `{root}`", ""]
    if changes:
        lines += ["Parameters applied to params.yaml: " + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in changes.items()), ""]
    lines += ["## Validation metrics (Y channel, BT.601; bicubic baseline)", "",
              "| run | PSNR (dB) | SSIM | bicubic PSNR | bicubic SSIM | gain (dB) | train steps | MLflow run |",
              "|---|---|---|---|---|---|---|---|"]
    uris = set()
    for run in runs:
        m = _read(root / "data/eval" / run / "metrics.json")
        t = _read(root / "data/models" / run / "train_metrics.json")
        record = _read(root / "data/models" / run / "mlflow_run.json")
        uris.add(record.get("tracking_uri", "?"))
        lines.append(f"| {run} | {m.get('psnr', float('nan')):.2f} | {m.get('ssim', float('nan')):.4f} | "
                     f"{m.get('bicubic_psnr', float('nan')):.2f} | {m.get('bicubic_ssim', float('nan')):.4f} | "
                     f"{m.get('psnr_gain', float('nan')):+.2f} | {t.get('steps', '-')} | {run_link(record, ui_url)} |")
    decisions = _read(root / "data/registry/decisions.json")
    lines += ["", "## Promotion (MLflow registry, alias `champion`)", "",
              "| run | registered model | version | decision | PSNR | champion before | champion PSNR | margin (dB) |",
              "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        d = decisions.get(run, {})
        champ = d.get("champion_psnr")
        lines.append(f"| {run} | {d.get('registered_model', '-')} | {d.get('version', '-')} | **{d.get('outcome', '-')}** | "
                     f"{d.get('psnr', float('nan')):.4f} | {d.get('champion_version') or '-'} | "
                     f"{'-' if champ is None else f'{champ:.4f}'} | {d.get('margin_db', '-')} |")
    if styles is not None:
        style_lines, style_uris = style_report(root, styles, ui_url, timing_size)
        lines += style_lines
        uris |= style_uris
    lines += ["", "## Stages", "", "| stage | result | seconds |", "|---|---|---|"]
    for s in steps:
        lines.append(f"| {s['stage']} | {'ran' if s['ran'] else 'up to date (DVC cache)'} | {s['seconds']} |")
    bento = next((s.get("bento") for s in steps if s.get("bento")), None)
    if bento:
        lines += ["", f"Bento: `{bento}` (`bentoml serve {bento}`)"]
    lines += ["", "MLflow tracking URI: " + ", ".join(f"`{u}`" for u in sorted(uris))]
    return "\n".join(lines) + "\n"


# --- the flow ---------------------------------------------------------------------------------------------

@flow(name="retrain", log_prints=True)
def retrain(
    project_dir: str | None = None,
    scale: int | None = None,
    models: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    gpu_slots: int = 1,
    package_models: bool = True,
    build_bento: bool = True,
    push_remote: bool = False,
    remote: str | None = None,
    mlflow_ui_url: str | None = None,
    style: bool = True,
) -> dict:
    """Retrain the models of params.yaml (or ``models`` at ``scale``), evaluate, export, promote, package.

    ``style``: also run the style-transfer chain (fetch_style ... export_style_onnx; one train_style@<style>
    per ``style.fast.styles``, plus train_meta, both tagged ``gpu``) after promotion, before packaging.

    ``overrides``: dotted params.yaml keys, e.g. ``{"train.steps": 5000, "recipes.espcn.lr": 0.001}``.
    ``package_models``: export the champion ONNX files into ``serve_models/`` and, with ``build_bento``, run
    ``bentoml build`` (what `make package` does; offline, ~10-20 s here; the Bento lands in ``BENTOML_HOME``).
    ``push_remote``: ``dvc push`` the new outputs to the default (or ``remote``) DVC remote at the end.
    """
    root = Path(project_dir or os.environ.get("SRSTYLE_PROJECT") or PROJECT).resolve()
    limit = ensure_gpu_limit(gpu_slots)
    changes = apply_params(root, scale, models, overrides)
    from srstyle.config import load_params

    params = load_params(root / "params.yaml")
    runs = list(params.runs)
    styles = list(params.style.fast.styles) if style else None
    steps = [fetch(root), validate(root), patches(root)]
    # DVC holds a repository lock while it reproduces, so stages of one workspace run one after another;
    # the gpu limit is what keeps concurrent flow runs (scheduled + on-demand, or workspaces on several
    # nodes) from oversubscribing the GPUs.
    steps += [train(root, run) for run in runs]
    for run in runs:
        steps += [evaluate(root, run), export_onnx(root, run)]
    steps.append(promote(root))
    if styles is not None:
        steps += [fetch_style(root), validate_style(root)]
        steps += [train_style(root, s) for s in styles]
        steps += [train_meta(root), evaluate_style(root), export_style_onnx(root)]
    packaged = package(root, build_bento) if package_models else None
    if packaged:
        steps.append(packaged)
    if push_remote:
        steps.append(push(root, remote))
    markdown = report(root, runs, steps, mlflow_ui_url, changes, styles, params.style.evaluate.timing_size)
    artifact_id = create_markdown_artifact(
        markdown=markdown, key=REPORT_KEY,
        description="Retrain: metrics per run, promotion decisions, style-transfer metrics, MLflow runs")
    return {
        "runs": runs,
        "metrics": {run: _read(root / "data/eval" / run / "metrics.json") for run in runs},
        "decisions": _read(root / "data/registry/decisions.json"),
        "steps": steps,
        "style": None if styles is None else {
            "styles": styles,
            "metrics": _read(root / STYLE_DIR / "eval/metrics.json"),
            "onnx": _read(root / STYLE_DIR / "export_style_onnx.json"),
            "mlflow_runs": {name: r.get("run_id") for name, r in style_runs(root, styles).items()},
        },
        "package": packaged,
        "gpu_limit": limit,
        "params_changes": changes,
        "artifact_id": str(artifact_id),
        "report": markdown,
    }


if __name__ == "__main__":
    retrain()
