"""The `evaluate_style` stage: every style method on held-out content photos, measured one way.

For each (method, style, content): the content loss (features at the training content tap) and the Gram
style loss (training style taps, the painting at the training style size, frame trimmed), both with the
backbone the networks were trained with; SSIM of the luminance to the content; the artefact checks of
:mod:`srstyle.evaluate.artefacts` (dark blobs, energy at periods under 4 px against the content's); and the
same losses of a Gatys result for that pair, the optimisation-based reference that feed-forward methods
approximate (``*_over_gatys``: 1 = as good as optimisation). Gatys runs for every fast style and every
painting the meta network is evaluated on (training and held out), so both have a reference. The meta
network's paintings must also look different: the mean distance between two paintings' outputs for the same
photo, against the same distance between their Gatys results (``meta_output_distance_over_gatys``).
Baselines kept as metrics: the unstyled content and an untrained Johnson network. Speed: milliseconds per
timing_size^2 image; the meta network's adaptation to a new painting (one VGG pass + the meta network).

Writes metrics.json (summary, DVC metrics), per_image.csv, one grid picture per method (contents x styles)
and logs them to MLflow.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..config import Params
from ..data.style_data import StylePaths, load_image, load_painting, style_names, to_uint8, validated_files
from ..io import atomic_write, write_json
from ..losses import StyleTransferLoss
from ..stylize import Stylizer, luminance
from ..models.style.gatys import max_increase, resize_to
from ..train.style import build_style_loss
from .artefacts import artefact_metrics, dark_floor
from .metrics import ssim

log = logging.getLogger(__name__)


def _measure(loss: StyleTransferLoss, out: torch.Tensor, content: torch.Tensor, grams: dict,
             painting_floor: float) -> dict[str, float]:
    with torch.no_grad():
        parts = loss(out, content, style_grams=grams)
    y_out = luminance(out)[0, 0].numpy() * 255.0
    y_content = luminance(content)[0, 0].numpy() * 255.0
    return {"content_loss": float(parts["content"]), "style_loss": float(parts["style"]),
            "ssim_to_content": ssim(y_out, y_content),
            **artefact_metrics(to_uint8(out[0]), to_uint8(content[0]), painting_floor)}


def _timing(fn, size: int, repeats: int) -> float:
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fn(x)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            fn(x)
    return (time.perf_counter() - start) / repeats * 1000.0


def grid_picture(rows: list[np.ndarray], cells: list[list[np.ndarray]], headers: list[np.ndarray], tile: int = 160) -> np.ndarray:
    """First row: a blank corner then each style; then per content: the content, then its results."""

    def fit(img: np.ndarray) -> np.ndarray:
        pil = Image.fromarray(img)
        pil.thumbnail((tile, tile))
        canvas = np.full((tile, tile, 3), 255, np.uint8)
        h, w = pil.size[1], pil.size[0]
        canvas[(tile - h) // 2:(tile - h) // 2 + h, (tile - w) // 2:(tile - w) // 2 + w] = np.asarray(pil)
        return canvas

    blank = np.full((tile, tile, 3), 255, np.uint8)
    lines = [np.concatenate([blank] + [fit(h) for h in headers], 1)]
    for content, results in zip(rows, cells):
        lines.append(np.concatenate([fit(content)] + [fit(r) for r in results], 1))
    return np.concatenate(lines, 0)


def evaluate_style(params: Params, paths: StylePaths, out_dir: Path, *, tracking_root: Path | None = None,
                   progress: bool = True) -> dict:
    cfg, ecfg = params.style, params.style.evaluate
    loss = build_style_loss(cfg.fast.loss, cfg.backbone)
    contents = {p.stem: resize_to(load_image(p), ecfg.size) for p in validated_files(paths, "content", "val")[: ecfg.max_contents]}
    train_styles, held_out = style_names(paths, "train"), style_names(paths, "val")
    all_styles = {**train_styles, **held_out}
    style_images = {n: load_painting(p, cfg.fast.style_size) for n, p in all_styles.items()}
    grams = {n: loss.style_grams(img) for n, img in style_images.items()}
    floors = {n: dark_floor(to_uint8(img[0])) for n, img in style_images.items()}

    methods: dict[str, tuple[Stylizer, list[str]]] = {}
    for style in cfg.fast.styles:
        model = paths.fast_model_dir(style) / "model.pt"
        if model.is_file():
            methods[f"fast:{style}"] = (Stylizer.from_model_file(model), [style])
    if not methods:
        raise FileNotFoundError("no trained fast style model found under data/style/models/fast; run train_style first")
    torch.manual_seed(params.seed)
    from ..models.style.transformer_net import TransformerNet

    untrained = TransformerNet(cfg.fast.channels, cfg.fast.residual_blocks, output=cfg.fast.output).eval()
    methods["fast_untrained"] = (Stylizer("fast", net=untrained), list(cfg.fast.styles))
    meta_file = paths.meta_model_dir / "model.pt"
    if meta_file.is_file():
        meta = Stylizer.from_model_file(meta_file, cfg.backbone, style_size=cfg.meta.style_size)
        methods["meta"] = (meta, sorted(train_styles) + sorted(held_out))
    meta_styles = methods["meta"][1] if "meta" in methods else []
    gatys_styles = list(dict.fromkeys([*cfg.fast.styles, *meta_styles]))
    gatys = Stylizer.gatys(cfg.gatys)

    rows: list[dict] = []
    pictures: dict[str, dict[tuple[str, str], np.ndarray]] = {}
    gatys_reference: dict[tuple[str, str], dict] = {}
    increases = []
    jobs = [(c, s) for c in contents for s in gatys_styles]
    for c_name, s_name in tqdm(jobs, desc="gatys reference", disable=not progress):
        from ..models.style.gatys import gatys_transfer

        res = gatys_transfer(contents[c_name], style_images[s_name], cfg.gatys, gatys.gatys_loss,
                             iterations=[ecfg.gatys_iterations], sizes=[ecfg.size], precision=gatys.gatys_precision)
        increases.append(max_increase(res.history))
        measured = _measure(loss, res.image, contents[c_name], grams[s_name], floors[s_name])
        gatys_reference[(c_name, s_name)] = measured
        pictures.setdefault("gatys", {})[(c_name, s_name)] = to_uint8(res.image[0])
        rows.append({"method": "gatys", "style": s_name, "content": c_name, "held_out_style": s_name in held_out,
                     "seconds": round(res.seconds, 3), "precision": res.precision, **measured})

    for c_name, content in contents.items():
        for s_name in all_styles:
            rows.append({"method": "content_unstyled", "style": s_name, "content": c_name,
                         "held_out_style": s_name in held_out,
                         **_measure(loss, content, content, grams[s_name], floors[s_name])})
    for method, (stylizer, styles) in methods.items():
        for c_name, content in contents.items():
            for s_name in styles:
                out = stylizer(content, style_images[s_name] if stylizer.method == "meta" else None)
                measured = _measure(loss, out, content, grams[s_name], floors[s_name])
                ref = gatys_reference.get((c_name, s_name))
                if ref:
                    measured["style_loss_over_gatys"] = measured["style_loss"] / max(ref["style_loss"], 1e-12)
                    measured["content_loss_over_gatys"] = measured["content_loss"] / max(ref["content_loss"], 1e-12)
                    # painterly strokes are fine detail too: Gatys' own output is the yardstick for it
                    measured["high_freq_over_gatys"] = measured["high_freq_ratio"] / max(ref["high_freq_ratio"], 1e-12)
                pictures.setdefault(method.split(":")[0], {})[(c_name, s_name)] = to_uint8(out[0])
                rows.append({"method": method, "style": s_name, "content": c_name,
                             "held_out_style": s_name in held_out, **measured})

    timing = {}
    for method, (stylizer, styles) in methods.items():
        if method == "fast_untrained":
            continue
        if stylizer.method == "meta":
            theta = stylizer.weights_for(style_images[styles[0]])
            timing["meta_ms_512"] = _timing(lambda x: stylizer.net.transformer(x, theta), ecfg.timing_size, ecfg.timing_repeats)
            # adaptation to a new painting: one VGG pass over it (longest side style_size) + the meta network
            timing["meta_weights_ms"] = _timing(lambda x: stylizer.weights_for(style_images[styles[0]]), 16, ecfg.timing_repeats)
        else:
            timing[f"{method.replace(':', '_')}_ms_512"] = _timing(stylizer.net, ecfg.timing_size, ecfg.timing_repeats)
    gatys_rows = [r for r in rows if r["method"] == "gatys"]
    timing["gatys_seconds_per_image"] = float(np.mean([r["seconds"] for r in gatys_rows]))

    summary = _summarise(rows, increases, timing, cfg.fast.styles)
    if "meta" in pictures:
        summary.update(_distinctness(pictures, list(contents), meta_styles))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(summary, out_dir / "metrics.json")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_write(out_dir / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    grids = {}
    for method, cells in pictures.items():
        styles = list(dict.fromkeys(s for _, s in cells))
        names = list(contents)
        grid = grid_picture([to_uint8(contents[c][0]) for c in names],
                            [[cells.get((c, s), np.full((8, 8, 3), 255, np.uint8)) for s in styles] for c in names],
                            [to_uint8(style_images[s][0]) for s in styles])
        Image.fromarray(grid).save(out_dir / f"grid_{method}.png")
        grids[method] = grid
    if tracking_root is not None:
        _log(params, tracking_root, summary, grids, out_dir, gatys.gatys_precision)
    return summary


def _mean(rows: list[dict], key: str, **match) -> float:
    values = [r[key] for r in rows if all(r.get(k) == v for k, v in match.items()) and key in r]
    return float(np.mean(values)) if values else float("nan")


def _summarise(rows: list[dict], increases: list[float], timing: dict, fast_styles: list[str]) -> dict:
    out: dict = {}

    def quality(prefix: str, **match) -> None:
        out[f"{prefix}_style_loss_over_gatys"] = _mean(rows, "style_loss_over_gatys", **match)
        out[f"{prefix}_content_loss_over_gatys"] = _mean(rows, "content_loss_over_gatys", **match)
        out[f"{prefix}_max_dark_blob_fraction"] = _max(rows, "dark_blob_fraction", **match)
        out[f"{prefix}_max_high_freq_ratio"] = _max(rows, "high_freq_ratio", **match)
        out[f"{prefix}_max_high_freq_over_gatys"] = _max(rows, "high_freq_over_gatys", **match)

    for style in fast_styles:
        trained = _mean(rows, "style_loss", method=f"fast:{style}")
        untrained = _mean(rows, "style_loss", method="fast_untrained", style=style)
        out[f"fast_{style}_style_loss"] = trained
        out[f"fast_{style}_style_loss_untrained"] = untrained
        out[f"fast_{style}_style_loss_ratio_to_untrained"] = trained / untrained
        quality(f"fast_{style}", method=f"fast:{style}")
        out[f"fast_{style}_content_loss"] = _mean(rows, "content_loss", method=f"fast:{style}")
        out[f"fast_{style}_ssim_to_content"] = _mean(rows, "ssim_to_content", method=f"fast:{style}")
    if any(r["method"] == "meta" for r in rows):
        for held in (True, False):
            tag = "held_out" if held else "train"
            meta = _mean(rows, "style_loss", method="meta", held_out_style=held)
            unstyled = _mean(rows, "style_loss", method="content_unstyled", held_out_style=held)
            out[f"meta_{tag}_style_loss"] = meta
            out[f"meta_{tag}_style_loss_unstyled_content"] = unstyled
            out[f"meta_{tag}_style_loss_ratio_to_unstyled"] = meta / unstyled
            quality(f"meta_{tag}", method="meta", held_out_style=held)
            out[f"meta_{tag}_ssim_to_content"] = _mean(rows, "ssim_to_content", method="meta", held_out_style=held)
    out["gatys_style_loss"] = _mean(rows, "style_loss", method="gatys")
    out["gatys_ssim_to_content"] = _mean(rows, "ssim_to_content", method="gatys")
    out["gatys_max_dark_blob_fraction"] = _max(rows, "dark_blob_fraction", method="gatys")
    out["gatys_max_high_freq_ratio"] = _max(rows, "high_freq_ratio", method="gatys")
    out["gatys_max_relative_loss_increase"] = max(increases) if increases else 0.0
    out.update(timing)
    return {k: round(v, 6) for k, v in out.items()}


def _max(rows: list[dict], key: str, **match) -> float:
    values = [r[key] for r in rows if all(r.get(k) == v for k, v in match.items()) and key in r]
    return float(np.max(values)) if values else float("nan")


def _distinctness(pictures: dict, contents: list[str], styles: list[str]) -> dict[str, float]:
    """Do the meta network's paintings look different? RMS distance (0-1 scale) between two paintings'
    outputs for the same photo, averaged over pairs and photos, and the same for their Gatys results."""

    def mean_distance(method: str) -> float:
        cells = pictures.get(method, {})
        d = [np.sqrt(np.mean((cells[(c, a)].astype(np.float32) - cells[(c, b)].astype(np.float32)) ** 2)) / 255
             for c in contents for i, a in enumerate(styles) for b in styles[i + 1:]
             if (c, a) in cells and (c, b) in cells]
        return float(np.mean(d)) if d else float("nan")

    meta, gatys = mean_distance("meta"), mean_distance("gatys")
    return {"meta_output_distance": round(meta, 6), "gatys_output_distance": round(gatys, 6),
            "meta_output_distance_over_gatys": round(meta / gatys, 6) if gatys > 0 else float("nan")}


def _log(params: Params, root: Path, summary: dict, grids: dict, out_dir: Path, gatys_precision: str) -> None:
    import mlflow

    from ..tracking import setup

    setup(params.tracking, root)
    with mlflow.start_run(run_name="style_evaluate", tags={"task": "style-transfer", "srstyle.run": "style_evaluate"}):
        mlflow.log_metrics(summary)
        mlflow.log_param("gatys_precision", gatys_precision)
        for method, grid in grids.items():
            mlflow.log_image(grid, f"grid_{method}.png")
        mlflow.log_artifact(str(out_dir / "per_image.csv"))
