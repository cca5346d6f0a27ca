"""Prefect flow `retrain`: the DVC pipeline of dvc.yaml, one task per stage, then packaging.

The tasks are read from dvc.yaml through DVC's own parser (``train@espcn_x3`` for each foreach item, upstream
first, otherwise in dvc.yaml's order): a stage added to dvc.yaml is a task here with no edit. Every task is
the same generic task running ``dvc repro --single-item <stage>``, so DVC's lock file and run cache decide what
actually reruns; its output streams into the task's log line by line; whether it ran is read from dvc.lock
(the stage's entry before and after), not from DVC's text. What Prefect adds is in ``STAGE_SETTINGS``: retries
with backoff on the network-facing fetch stages, the ``gpu`` tag (a tag concurrency limit) on training
stages, a timeout per stage (the stage's whole process group is killed on timeout or cancellation).

Run parameters (scale, models, overrides) are applied the way ``dvc exp run -S key=value`` applies them, for
this run only (pipelines/workspace.py: validated first, params.yaml restored afterwards, one run per
workspace at a time). The report is pipelines/report.py.
"""

from __future__ import annotations

import fnmatch
import os
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

from pipelines.dvc_graph import downstream, lock_entry, stage_order  # noqa: E402
from pipelines.report import STYLE_DIR, flow_report, style_runs  # noqa: E402
from pipelines.stage_process import StageFailed, StageTimeout, run_streaming  # noqa: E402,F401
from pipelines.workspace import params_changes, run_params, workspace_lock  # noqa: E402,F401
from srstyle.report import read_json as _read  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
REPORT_KEY = "retrain-report"
GPU_TAG = "gpu"
HOUR = 3600.0

# What Prefect adds per stage, keyed by the stage name before `@` (first matching pattern wins). Fetch stages
# reach the network (url sources): retried with exponential backoff (10, 20, 40 s, +-50 % jitter). Training
# is GPU-bound: tagged `gpu`, so the tag's concurrency limit caps trainings across flow runs.
STAGE_SETTINGS: list[tuple[str, dict]] = [
    ("fetch*", {"retries": 3, "retry_delay_seconds": [10, 20, 40], "retry_jitter_factor": 0.5, "timeout_s": 2 * HOUR}),
    ("train*", {"tags": [GPU_TAG], "timeout_s": 48 * HOUR}),
    ("*", {"timeout_s": 6 * HOUR}),
]
# style=False leaves out these stages and every stage downstream of them
STYLE_ROOTS = ("fetch_style",)


def stage_settings(stage: str) -> dict:
    base = stage.split("@", 1)[0]
    settings = next(s for pattern, s in STAGE_SETTINGS if fnmatch.fnmatchcase(base, pattern))
    return {"retries": 0, "retry_delay_seconds": 0, "retry_jitter_factor": None, "tags": [], **settings}


def _env() -> dict[str, str]:
    """The stages run with this interpreter's environment (its venv first on PATH), never a stray root;
    unbuffered, so their lines reach the task log as they are written."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SRSTYLE_ROOT", None)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TQDM_MININTERVAL", "10")  # progress bars: a log line every 10 s, not every step
    return env


def run_cmd(cmd: list[str], root: Path, timeout_s: float | None = None) -> str:
    logger = get_run_logger()
    logger.info("$ %s  (in %s)", " ".join(cmd), root)
    return run_streaming(cmd, root, _env(), logger.info, timeout=timeout_s)


@task(name="dvc-stage", task_run_name="{stage}")
def dvc_stage(root: Path, stage: str, timeout_s: float | None = None) -> dict:
    """`dvc repro --single-item <stage>`: runs the stage only when its deps/params/outs changed."""
    t0 = time.perf_counter()
    before = lock_entry(root, stage)
    run_cmd(["dvc", "repro", "--single-item", stage], root, timeout_s)
    ran = before is None or lock_entry(root, stage) != before
    return {"stage": stage, "ran": ran, "seconds": round(time.perf_counter() - t0, 2)}


def stage_task(stage: str):
    """The generic task with the stage's settings (name = stage name before `@`, run name = the stage)."""
    s = stage_settings(stage)
    return dvc_stage.with_options(name=stage.split("@", 1)[0], tags=set(s["tags"]), retries=s["retries"],
                                  retry_delay_seconds=s["retry_delay_seconds"],
                                  retry_jitter_factor=s["retry_jitter_factor"])


@task(name="package")
def package(root: Path, build_bento: bool) -> dict:
    """What `make package` does: the champion ONNX files out of the registry, then (optionally) `bentoml build`."""
    t0 = time.perf_counter()
    run_cmd([sys.executable, "-m", "srstyle.cli", "export-champions", "--out", "serve_models"], root, HOUR)
    files = sorted(p.name for p in (root / "serve_models").glob("*.onnx"))
    bento = None
    if build_bento:
        # bentofile.yaml installs the pinned serving requirements this writes (no torch in the Bento).
        run_cmd([sys.executable, "-m", "srstyle.serving.package", "--constraints", "constraints.txt",
                 "--out", "build/serve-requirements.txt"], root, HOUR)
        out = run_cmd(["bentoml", "build", "-f", "bentofile.yaml", "--output", "tag"], root, HOUR)
        bento = next((line.split("__tag__:", 1)[1].strip() for line in out.splitlines() if "__tag__:" in line), None)
    return {"stage": "package", "ran": True, "seconds": round(time.perf_counter() - t0, 2), "files": files,
            "bento": bento}


@task(name="dvc-push", retries=2, retry_delay_seconds=[10, 20])
def push(root: Path, remote: str | None) -> dict:
    t0 = time.perf_counter()
    run_cmd(["dvc", "push"] + (["-r", remote] if remote else []), root, 2 * HOUR)
    return {"stage": "dvc push", "ran": True, "seconds": round(time.perf_counter() - t0, 2)}


def ensure_gpu_limit(slots: int) -> dict:
    """Create the ``gpu`` tag concurrency limit if the server has none (operators may change it in the UI or
    with `prefect concurrency-limit create gpu N`; an existing limit is left as they set it)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_concurrency_limit_by_tag(GPU_TAG)
        except ObjectNotFound:
            client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=slots)
            limit = client.read_concurrency_limit_by_tag(GPU_TAG)
        return {"tag": limit.tag, "limit": limit.concurrency_limit}


def flow_stages(root: Path, style: bool) -> list[str]:
    order = stage_order(root)
    if not style:
        skip = downstream(root, list(STYLE_ROOTS))
        order = [s for s in order if s not in skip]
    return order


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
    workspace_wait_s: float | None = None,
) -> dict:
    """Reproduce every stage of dvc.yaml (for ``models`` at ``scale`` when given), then package.

    ``style=False`` leaves out the style-transfer chain (fetch_style and every stage downstream of it).
    ``overrides``: dotted params.yaml keys for this run, e.g. ``{"train.steps": 5000}``.
    ``package_models``: export the champion ONNX files into ``serve_models/`` and, with ``build_bento``, run
    ``bentoml build`` (what `make package` does; the Bento lands in ``BENTOML_HOME``).
    ``push_remote``: ``dvc push`` the new outputs to the default (or ``remote``) DVC remote at the end.
    ``workspace_wait_s``: how long to wait for another flow run in the same project (None = as long as it takes).
    """
    logger = get_run_logger()
    root = Path(project_dir or os.environ.get("SRSTYLE_PROJECT") or PROJECT).resolve()
    params_changes(root, scale, models, overrides)  # bad parameters fail here, before waiting or any stage
    limit = ensure_gpu_limit(gpu_slots)
    with workspace_lock(root, workspace_wait_s, logger.info), run_params(root, scale, models, overrides) as changes:
        if changes:
            logger.info("params.yaml for this run: %s", changes)
        from srstyle.config import load_params

        params = load_params(root / "params.yaml")
        runs = list(params.runs)
        styles = list(params.style.fast.styles) if style else None
        stages = flow_stages(root, style)
        steps = [stage_task(stage)(root, stage, stage_settings(stage)["timeout_s"]) for stage in stages]
        packaged = package(root, build_bento) if package_models else None
        if packaged:
            steps.append(packaged)
        if push_remote:
            steps.append(push(root, remote))
        markdown = flow_report(root, runs, steps, mlflow_ui_url, changes, styles, params.style.evaluate.timing_size)
        result = {
            "runs": runs,
            "stages": stages,
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
            "report": markdown,
        }
    artifact_id = create_markdown_artifact(
        markdown=markdown, key=REPORT_KEY,
        description="Retrain: metrics per run, promotion decisions, style-transfer metrics, MLflow runs")
    result["artifact_id"] = str(artifact_id)
    return result


if __name__ == "__main__":
    retrain()
