"""Side-by-side pictures: LR (nearest-upscaled) | bicubic | model | HR."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..resize import bicubic_rgb

LABELS = ("LR", "bicubic", "model", "HR")


def _nearest(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((size_hw[1], size_hw[0]), Image.Resampling.NEAREST))


def _gray_to_rgb(y: np.ndarray) -> np.ndarray:
    y = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=-1)


def strip(panels: list[np.ndarray], labels: tuple[str, ...] = LABELS, gap: int = 4) -> np.ndarray:
    """Concatenate equally sized HxWx3 uint8 panels left to right with a label on each."""
    h, w = panels[0].shape[:2]
    canvas = Image.new("RGB", (len(panels) * w + (len(panels) - 1) * gap, h + 16), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (panel, label) in enumerate(zip(panels, labels)):
        x = i * (w + gap)
        canvas.paste(Image.fromarray(panel), (x, 16))
        draw.text((x + 2, 2), label, fill=(0, 0, 0))
    return np.asarray(canvas)


def image_comparison(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, crop: int) -> np.ndarray:
    """Centre crop of ``crop`` HR pixels from each of LR | bicubic | SR | HR (RGB uint8 images)."""
    H, W = hr.shape[:2]
    s = H // lr.shape[0]
    c = min(crop, H, W) // s * s
    y0, x0 = (H - c) // 2 // s * s, (W - c) // 2 // s * s
    bic = bicubic_rgb(lr, (H, W))
    lr_crop = lr[y0 // s : (y0 + c) // s, x0 // s : (x0 + c) // s]
    panels = [_nearest(lr_crop, (c, c)), bic[y0 : y0 + c, x0 : x0 + c], sr[y0 : y0 + c, x0 : x0 + c], hr[y0 : y0 + c, x0 : x0 + c]]
    return strip(panels)


@torch.no_grad()
def patch_strip(model, store, count: int = 4) -> np.ndarray:
    """Rows of LR | bicubic | model | HR for the first ``count`` validation patches (Y or RGB stores)."""
    from ..train.sr import model_input

    device = next(model.parameters()).device
    idx = np.linspace(0, len(store) - 1, num=min(count, len(store))).astype(int)
    lr, hr = store.batch(idx)
    sr = model(model_input(lr.to(device), model.input_kind, store.scale)).clamp(0, 1).cpu()
    bic = torch.nn.functional.interpolate(lr, scale_factor=store.scale, mode="bicubic", align_corners=False).clamp(0, 1)
    near = torch.nn.functional.interpolate(lr, scale_factor=store.scale, mode="nearest")

    def rgb(t: torch.Tensor) -> np.ndarray:
        a = (t.permute(1, 2, 0).numpy() * 255.0)
        return _gray_to_rgb(a[..., 0]) if a.shape[-1] == 1 else np.clip(np.rint(a), 0, 255).astype(np.uint8)

    rows = [strip([rgb(near[i]), rgb(bic[i]), rgb(sr[i]), rgb(hr[i])]) for i in range(len(idx))]
    return np.concatenate(rows, axis=0)
