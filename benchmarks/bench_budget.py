"""Does training get better with budget? ESPCN x3 and FSRCNN x3 at 1x, 2x and 4x their default steps.

Needs the embedded data built once (``dvc repro patches``). For each run and budget it trains from scratch
(no MLflow, a scratch folder), then prints the exported model's PSNR gain over bicubic on the validation
photos (Y, BT.601, border = scale: the evaluate stage's protocol), the best validation-patch PSNR and the
number of loss spikes, checks that the gain never falls as the budget grows (within 0.02 dB), and saves
the validation curves as a PNG.

    python benchmarks/bench_budget.py                       # step budgets 1x 2x 4x
    python benchmarks/bench_budget.py --seconds 60 120 240  # time budgets instead
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from srstyle.config import parse_params
from srstyle.evaluate.sr import evaluate_image
from srstyle.inference import load_sr_model
from srstyle.io import load_rgb, read_json
from srstyle.train.sr import train_sr

TOLERANCE_DB = 0.02


def photo_gain(model_path: Path, root: Path) -> float:
    """Mean PSNR gain over bicubic on the validation photos."""
    model = load_sr_model(model_path)
    files = [m["file"] for m in read_json(root / "data/validated/manifest.json") if m["split"] == "val"]
    rows = [evaluate_image(model, load_rgb(root / "data/raw" / f, 10**8)) for f in files]
    return float(np.mean([r["psnr"] - r["bicubic_psnr"] for r in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["espcn_x3", "fsrcnn_x3"])
    parser.add_argument("--multiples", nargs="+", type=float, default=[1, 2, 4])
    parser.add_argument("--seconds", nargs="+", type=float, help="time budgets instead of step multiples")
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--png", type=Path, default=Path("bench_budget.png"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (1 on a CPU shared with other jobs)")
    args = parser.parse_args()

    raw = yaml.safe_load((args.root / "params.yaml").read_text(encoding="utf-8"))
    budgets = [("s", s) for s in args.seconds] if args.seconds else [("x", m) for m in args.multiples]
    print(f"load average {os.getloadavg()}; cpu flags: " + subprocess.run(
        "grep -o 'avx512_vnni\\|avx_vnni\\|avx2' /proc/cpuinfo | sort -u | tr '\\n' ' '", shell=True,
        capture_output=True, text=True).stdout)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            base = parse_params(raw).run(run)
            for kind, amount in budgets:
                over = {"time_budget_s": amount} if kind == "s" else {"steps": int(round(base.train.steps * amount))}
                if args.threads:
                    over["threads"] = args.threads
                raw_run = {**raw, "runs": {**raw["runs"], run: {**raw["runs"][run], **over}}}
                params = parse_params(raw_run)
                out = Path(tmp) / f"{run}_{kind}{amount:g}"
                t0 = time.perf_counter()
                res = train_sr(params, run, args.root / "data/patches", out, progress=False)
                seconds = time.perf_counter() - t0
                metrics = read_json(out / "train_metrics.json")
                curve = [l.split(",") for l in (out / "curve.csv").read_text().splitlines()]
                col = curve[0].index("val_psnr")
                points = [(int(r[0]), float(r[col])) for r in curve[1:] if r[col]]
                row = {"budget": f"{amount:g}{kind}", "steps": res.steps, "seconds": seconds,
                       "gain": photo_gain(out / "model.pt", args.root), "best_val": res.best_val_psnr,
                       "best_step": metrics["best_step"], "spikes": metrics["loss_spikes"], "curve": points}
                results.setdefault(run, []).append(row)
                print(f"{run:10s} budget {row['budget']:>5s}: {row['steps']:6d} steps {seconds:6.0f} s  "
                      f"photo gain {row['gain']:+.3f} dB  best val-patch PSNR {row['best_val']:.3f} "
                      f"(step {row['best_step']})  loss spikes {row['spikes']}", flush=True)

    ok = True
    for run, rows in results.items():
        gains = [r["gain"] for r in rows]
        monotone = all(b >= a - TOLERANCE_DB for a, b in zip(gains, gains[1:]))
        ok &= monotone
        print(f"{run}: gains {' -> '.join(f'{g:+.3f}' for g in gains)} dB: "
              f"{'never falls' if monotone else 'FALLS'} (tolerance {TOLERANCE_DB} dB)")
    if "espcn_x3" in results and not args.seconds and 2 in args.multiples:
        g2 = results["espcn_x3"][args.multiples.index(2)]["gain"]
        print(f"espcn_x3 at 2x: {g2:+.3f} dB ({'>=' if g2 >= 0.8 else '<'} +0.8 dB target)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (run, rows) in zip(axes[0], results.items()):
        for r in rows:
            steps, psnr = zip(*r["curve"])
            ax.plot(steps, psnr, label=f"{r['budget']} (gain {r['gain']:+.2f} dB)")
        ax.set(title=run, xlabel="step", ylabel="validation-patch PSNR (Y, dB)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=100)
    print(f"curves: {args.png}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
