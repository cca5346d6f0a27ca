"""DVC stage `compare`: every trained run side by side on the same crop, and one metrics table."""

import logging

from srstyle.config import load_params
from srstyle.evaluate.compare import all_models_comparison
from srstyle.inference import load_sr_model
from srstyle.io import atomic_write, load_rgb, read_json, save_png, write_json
from srstyle.logs import setup_logging
from srstyle.paths import DataPaths, project_root

if __name__ == "__main__":
    setup_logging()
    params = load_params()
    paths = DataPaths(project_root())
    out = paths.data / "compare"
    models = {run: load_sr_model(paths.model_dir(run) / "model.pt") for run in params.runs}
    first_val = next(m for m in read_json(paths.validated / "manifest.json") if m["split"] == "val")
    picture = all_models_comparison(models, load_rgb(paths.raw / first_val["file"]), params.evaluate.crop_size)
    save_png(picture, out / "all_models.png")

    summary = {run: read_json(paths.eval_dir(run) / "metrics.json") for run in params.runs}
    write_json(summary, out / "summary.json")
    lines = ["| run | scale | PSNR | SSIM | bicubic PSNR | bicubic SSIM | gain (dB) |", "|---|---|---|---|---|---|---|"]
    for run, m in summary.items():
        lines.append(f"| {run} | x{m['scale']} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['bicubic_psnr']:.2f} | "
                     f"{m['bicubic_ssim']:.4f} | {m['psnr_gain']:+.2f} |")
    with atomic_write(out / "summary.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    logging.getLogger("compare").info("\n%s", "\n".join(lines))
