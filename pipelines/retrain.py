"""Prefect flow `retrain`: fetch -> validate -> patches -> train@<run> -> evaluate@<run> -> export_onnx@<run>
-> promote -> package, one task per DVC stage.

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


def report(root: Path, runs: list[str], steps: list[dict], ui_url: str | None, changes: dict) -> str:
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
) -> dict:
    """Retrain the models of params.yaml (or ``models`` at ``scale``), evaluate, export, promote, package.

    ``overrides``: dotted params.yaml keys, e.g. ``{"train.steps": 5000, "recipes.espcn.lr": 0.001}``.
    ``package_models``: export the champion ONNX files into ``serve_models/`` and, with ``build_bento``, run
    ``bentoml build`` (what `make package` does; offline, ~10-20 s here; the Bento lands in ``BENTOML_HOME``).
    ``push_remote``: ``dvc push`` the new outputs to the default (or ``remote``) DVC remote at the end.
    """
    root = Path(project_dir or os.environ.get("SRSTYLE_PROJECT") or PROJECT).resolve()
    limit = ensure_gpu_limit(gpu_slots)
    changes = apply_params(root, scale, models, overrides)
    from srstyle.config import load_params

    runs = list(load_params(root / "params.yaml").runs)
    steps = [fetch(root), validate(root), patches(root)]
    # DVC holds a repository lock while it reproduces, so stages of one workspace run one after another;
    # the gpu limit is what keeps concurrent flow runs (scheduled + on-demand, or workspaces on several
    # nodes) from oversubscribing the GPUs.
    steps += [train(root, run) for run in runs]
    for run in runs:
        steps += [evaluate(root, run), export_onnx(root, run)]
    steps.append(promote(root))
    packaged = package(root, build_bento) if package_models else None
    if packaged:
        steps.append(packaged)
    if push_remote:
        steps.append(push(root, remote))
    markdown = report(root, runs, steps, mlflow_ui_url, changes)
    artifact_id = create_markdown_artifact(markdown=markdown, key=REPORT_KEY,
                                           description="Retrain: metrics per run, promotion decisions, MLflow runs")
    return {
        "runs": runs,
        "metrics": {run: _read(root / "data/eval" / run / "metrics.json") for run in runs},
        "decisions": _read(root / "data/registry/decisions.json"),
        "steps": steps,
        "package": packaged,
        "gpu_limit": limit,
        "params_changes": changes,
        "artifact_id": str(artifact_id),
        "report": markdown,
    }


if __name__ == "__main__":
    retrain()
