"""Side-by-side pictures: LR (nearest-upscaled) | bicubic | model | HR.

The pictures of whole images run the models through the prediction core (``model.upscale``); the trainer's
picture of a torch model on patch tensors (``srstyle.train.sr_common.patch_strip``) is built from these strips.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..resize import bicubic_rgb

LABELS = ("LR", "bicubic", "model", "HR")


def _nearest(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((size_hw[1], size_hw[0]), Image.Resampling.NEAREST))


def gray_to_rgb(y: np.ndarray) -> np.ndarray:
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


def _center_box(h: int, w: int, crop: int, align: int) -> tuple[int, int, int]:
    c = min(crop, h, w) // align * align
    return (h - c) // 2 // align * align, (w - c) // 2 // align * align, c


def all_models_comparison(models: dict, hr_rgb: np.ndarray, crop: int) -> np.ndarray:
    """One row per scale: LR | bicubic | every model of that scale | HR, all on the same HR crop."""
    from ..resize import downscale_rgb, modcrop

    by_scale: dict[int, list[tuple[str, object]]] = {}
    for name, model in models.items():
        by_scale.setdefault(model.scale, []).append((name, model))
    align = int(np.lcm.reduce(list(by_scale))) if by_scale else 1
    hr = modcrop(hr_rgb, align)
    y0, x0, c = _center_box(*hr.shape[:2], crop, align)
    rows = []
    for scale, entries in sorted(by_scale.items()):
        lr = downscale_rgb(hr, scale)
        # Upscale only a margin around the crop: the models are fully convolutional.
        m = 8 * scale
        ly0, lx0 = max(y0 - m, 0) // scale, max(x0 - m, 0) // scale
        ly1, lx1 = min(y0 + c + m, hr.shape[0]) // scale, min(x0 + c + m, hr.shape[1]) // scale
        region = lr[ly0:ly1, lx0:lx1]
        oy, ox = y0 - ly0 * scale, x0 - lx0 * scale
        panels = [_nearest(lr[y0 // scale : (y0 + c) // scale, x0 // scale : (x0 + c) // scale], (c, c)),
                  bicubic_rgb(region, (region.shape[0] * scale, region.shape[1] * scale))[oy : oy + c, ox : ox + c]]
        labels = [f"LR x{scale}", "bicubic"]
        for name, model in entries:
            panels.append(model.upscale(region)[oy : oy + c, ox : ox + c])
            labels.append(name)
        panels.append(hr[y0 : y0 + c, x0 : x0 + c])
        labels.append("HR")
        rows.append(strip(panels, tuple(labels)))
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
