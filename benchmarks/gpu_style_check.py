"""Issue 19's GPU check: the fast and meta networks at their papers' settings for a few minutes on one GPU,
then ``evaluate_style`` against Gatys (the same grids and metrics as `make run`), all written under ``--out``.

Papers' settings: Johnson's transformer at width 32 on 256 px crops, batch 4 (he trains 40,000 steps on COCO);
Shen's meta network at base 8 on 256 px crops, batch 4. The content photos are the embedded ones (no COCO
offline), the paintings the embedded seven with the two held out, the loss and evaluation as in params.yaml,
so the figures compare with the CPU demo's `data/style/eval/metrics.json`.

    python benchmarks/gpu_style_check.py --out $OUT --fast-steps 3000 --meta-steps 3000   # on the GPU
    python benchmarks/gpu_style_check.py --out /tmp/gpu_check --tiny                      # dry run, CPU, ~1 min

Needs the validated style data (`dvc repro validate_style`: data/style/raw and data/style/validated, ~6 MB;
give both to the device tool's ``carry``). Training writes under ``--out``/work, never into data/. MLflow is
off (the device machine has no MLflow, DVC or pydantic: bring pydantic's wheels, see ../shared/design.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the device machine runs from a copy of the tree, not an install

import yaml  # noqa: E402

from srstyle.config import parse_params  # noqa: E402
from srstyle.data.style_data import StylePaths  # noqa: E402
from srstyle.evaluate.style import evaluate_style  # noqa: E402
from srstyle.train.style import train_fast_style, train_meta  # noqa: E402


def _set(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def check_params(args: argparse.Namespace):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    fast = {"channels": 32, "image_size": 256, "batch_size": 4, "steps": args.fast_steps, "device": args.device,
            "val_every": max(1, args.fast_steps // 10), "checkpoint_every": max(1, args.fast_steps // 2)}
    meta = {"image_size": 256, "batch_size": 4, "steps": args.meta_steps, "device": args.device,
            "val_every": max(1, args.meta_steps // 10), "checkpoint_every": max(1, args.meta_steps // 2)}
    if args.tiny:
        fast.update(channels=8, image_size=64, batch_size=2)
        meta.update(image_size=64, batch_size=2)
        _set(raw, "style.evaluate.max_contents", 1)
        _set(raw, "style.evaluate.gatys_iterations", 2)
        _set(raw, "style.evaluate.timing_size", 64)
        _set(raw, "style.evaluate.timing_repeats", 1)
    for key, value in fast.items():
        _set(raw, f"style.fast.{key}", value)
    for key, value in meta.items():
        _set(raw, f"style.meta.{key}", value)
    _set(raw, "style.gatys.device", args.device)
    return parse_params(raw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--fast-steps", type=int, default=3000)
    ap.add_argument("--meta-steps", type=int, default=3000)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present) | cuda | cpu")
    ap.add_argument("--tiny", action="store_true", help="dry run: a few steps at 64 px")
    args = ap.parse_args()
    if args.tiny:
        args.fast_steps, args.meta_steps = min(args.fast_steps, 4), min(args.meta_steps, 4)
    params = check_params(args)

    # A work root of its own: the project's validated data, models written beside the results
    work = args.out / "work"
    for part in ("raw", "validated"):
        src, dst = ROOT / "data" / "style" / part, work / "data" / "style" / part
        if not src.is_dir():
            raise SystemExit(f"{src}: missing; run `dvc repro validate_style` first (and carry it to the device)")
        if not dst.exists():
            shutil.copytree(src, dst)
    paths = StylePaths(work)
    report: dict = {"fast_steps": args.fast_steps, "meta_steps": args.meta_steps, "tiny": args.tiny}
    for style in params.style.fast.styles:
        t0 = time.perf_counter()
        result = train_fast_style(params, style, paths, paths.fast_model_dir(style), tracking_root=None)
        report[f"fast_{style}"] = {"seconds": round(time.perf_counter() - t0, 1), "images_per_s": result.images_per_s,
                                   "final_style_loss": result.final_style}
    t0 = time.perf_counter()
    result = train_meta(params, paths, paths.meta_model_dir, tracking_root=None)
    report["meta"] = {"seconds": round(time.perf_counter() - t0, 1), "images_per_s": result.images_per_s,
                      "final_style_loss": result.final_style}
    t0 = time.perf_counter()
    summary = evaluate_style(params, paths, args.out / "eval", tracking_root=None)
    report["evaluate_seconds"] = round(time.perf_counter() - t0, 1)
    keys = [k for k in summary if k.endswith(("_over_gatys", "dark_blob_fraction", "high_freq_ratio"))]
    report["metrics"] = {k: summary[k] for k in keys}
    (args.out / "gpu_style_check.json").write_text(json.dumps(report, indent=2, default=float))
    print(json.dumps(report, indent=2, default=float))
    print(f"pictures: {args.out / 'eval'}/grid_*.png; models: {work / 'data' / 'style' / 'models'}")


if __name__ == "__main__":
    main()
