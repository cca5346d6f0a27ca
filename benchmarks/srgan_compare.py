"""SRGAN's content-loss comparison: SRResNet (MSE) against SRGAN with MSE, VGG22 and VGG54 content losses.

The four runs of ``profiles/srgan_compare.yaml`` (one generator, the same pretrain + adversarial step budget)
are trained on the embedded demo data from scratch (no MLflow), evaluated with the evaluate stage's protocol
(PSNR/SSIM on Y, NIQE, vgg_distance on whole validation photos; bicubic and the HR photos beside), and drawn on
the same crop. Prints a Markdown table; writes it (``--md``) and the picture (``--png``).

    python benchmarks/srgan_compare.py --threads 1 --work /tmp/srgan_compare \\
        --png docs/figures/srgan_content_losses.png --md srgan_compare.md

``--pretrain-steps`` / ``--steps`` change the budget of every run alike (default: recipes.srgan of params.yaml).
A finished run's model.pt is reused, so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import yaml

from srstyle.config import parse_params
from srstyle.data.fetch import fetch
from srstyle.data.patches import make_patches
from srstyle.data.validate import validate
from srstyle.evaluate.compare import all_models_comparison
from srstyle.evaluate.perceptual import VGGDistance
from srstyle.evaluate.sr import evaluate_sr
from srstyle.inference import load_sr_model
from srstyle.io import load_rgb, read_json, save_png
from srstyle.train.sr import train_sr

REPO = Path(__file__).resolve().parents[1]
LABELS = {"srresnet_mse_x4": "SRResNet (MSE)", "srgan_mse_x4": "SRGAN-MSE", "srgan_vgg22_x4": "SRGAN-VGG22",
          "srgan_vgg54_x4": "SRGAN-VGG54"}


def profile_runs(path: Path) -> dict:
    """The ``runs.<name>`` entries of a profile, as a runs block."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {key.split(".", 1)[1]: value for key, value in data.items() if key.startswith("runs.")}


def table(rows: dict[str, dict], steps: str) -> str:
    first = next(iter(rows.values()))
    lines = [f"| x4, {first['images']} validation photos ({steps}) | PSNR (dB) | SSIM | NIQE | VGG distance |",
             "|---|---|---|---|---|",
             f"| bicubic | {first['bicubic_psnr']:.2f} | {first['bicubic_ssim']:.4f} | {first['bicubic_niqe']:.2f} | "
             f"{first['bicubic_vgg_distance']:.4f} |"]
    for run, m in rows.items():
        lines.append(f"| {LABELS.get(run, run)} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['niqe']:.2f} | {m['vgg_distance']:.4f} |")
    lines.append(f"| HR photos | - | - | {first['hr_niqe']:.2f} | 0 |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/srgan_compare"))
    parser.add_argument("--profile", type=Path, default=REPO / "profiles/srgan_compare.yaml")
    parser.add_argument("--pretrain-steps", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (1 on a CPU shared with other jobs)")
    parser.add_argument("--only", nargs="+", help="train and evaluate only these runs (e.g. in a second process)")
    parser.add_argument("--image", default="chelsea.png", help="validation photo of the picture")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--vgg-crop", type=int, default=0, help="vgg_distance window (0 = whole photos, ~3 s each)")
    parser.add_argument("--png", type=Path, default=Path("srgan_compare.png"))
    parser.add_argument("--md", type=Path, default=Path("srgan_compare.md"))
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    flags = subprocess.run("grep -o 'amx_bf16\\|avx512_bf16\\|avx512_vnni\\|avx2' /proc/cpuinfo | sort -u | tr '\\n' ' '",
                           shell=True, capture_output=True, text=True).stdout
    print(f"load average {os.getloadavg()}; cpu flags: {flags}")
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    recipe = dict(raw["recipes"]["srgan"])
    for key, value in (("pretrain_steps", args.pretrain_steps), ("steps", args.steps)):
        if value is not None:
            recipe[key] = value
    runs = profile_runs(args.profile)
    raw.update(runs={k: v for k, v in runs.items() if not args.only or k in args.only},
               recipes={**raw["recipes"], "srgan": recipe},
               patches={**raw["patches"], "scales": [4], "modes": ["rgb"]},
               train={**raw["train"], **({"threads": args.threads} if args.threads else {})})
    params = parse_params(raw)
    w = args.work
    if not (w / "patches").is_dir():
        fetch(params.data, w / "raw", w / "downloads", progress=False)
        validate(w / "raw", w / "validated", w / "quarantine", params.validate_, min_side=params.patches.hr_size)
        make_patches(w / "validated", w / "raw", w / "patches", params.patches, params.seed,
                     params.validate_.max_pixels, progress=False)
    budget = f"{recipe['pretrain_steps']} MSE + {recipe['steps']} adversarial steps, batch {recipe['batch_size']}"
    vgg = VGGDistance(params.perceptual.weights, params.perceptual.allow_random_init)
    rows, models = {}, {}
    for run in params.runs:
        out = w / "models" / run
        if not (out / "model.pt").is_file():
            t0 = time.perf_counter()
            res = train_sr(params, run, w / "patches", out, progress=False)
            print(f"{run}: {res.steps} steps in {time.perf_counter() - t0:.0f} s")
        models[LABELS.get(run, run)] = model = load_sr_model(out / "model.pt")
        done = w / "eval" / run / "metrics.json"
        if done.is_file() and done.stat().st_mtime > (out / "model.pt").stat().st_mtime and "niqe" in read_json(done):
            rows[run] = read_json(done)  # evaluated after this model was written (e.g. by an --only process)
        else:
            rows[run] = evaluate_sr(model, w / "validated", w / "raw", w / "eval" / run, crop=args.crop,
                                    max_pixels=params.validate_.max_pixels, perceptual=True, vgg=vgg, vgg_crop=args.vgg_crop)
        print(run, {k: rows[run][k] for k in ("psnr", "ssim", "niqe", "vgg_distance")})
    if args.vgg_crop:
        budget += f"; VGG distance on the central {args.vgg_crop} px"
    text = table(rows, budget)
    print(f"\n{vgg.description}\n\n{text}")
    args.md.write_text(text, encoding="utf-8")
    hr = load_rgb(w / "raw" / next(m["file"] for m in read_json(w / "validated/manifest.json")
                                   if m["split"] == "val" and Path(m["file"]).name == args.image))
    picture = all_models_comparison(models, hr, args.crop)
    # twice the size, nearest: the texture differences are a few pixels wide
    save_png(np.repeat(np.repeat(picture, 2, axis=0), 2, axis=1), args.png)
    print(f"wrote {args.png} and {args.md}")


if __name__ == "__main__":
    main()
