"""A painting's frame is not its style: dark (or white) borders found and cut off before a painting becomes a
style target.

Photographed paintings often keep a strip of frame, mount or shadow: *The Starry Night* as shipped has a 5-7 px
near-black border, about 70% of its near-black pixels. Kept, it asks every Gram matrix for black the brushwork
does not have, and the fast network answered with dark droplets in flat regions. A border line (row or column)
counts as frame when nearly all of its pixels are near-black or near-white; lines are peeled from each side
while that holds, up to ``max_fraction`` of the side, plus a one-pixel margin for the anti-aliased edge.
Torch-free: the prediction core uses it on paintings users upload.
"""

from __future__ import annotations

import numpy as np

# Luma (0-255) at or below which a pixel is frame-dark, at or above which frame-white (a mount or scan bed).
DARK, WHITE = 40.0, 235.0


def _frame_line(luma_line: np.ndarray, share: float) -> bool:
    return bool((luma_line <= DARK).mean() >= share or (luma_line >= WHITE).mean() >= share)


def frame_box(rgb: np.ndarray, max_fraction: float = 0.06, share: float = 0.9) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the painting without its frame, as slice bounds of ``rgb`` (HxWx3)."""
    luma = rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    h, w = luma.shape
    top, bottom, left, right = 0, h, 0, w
    limit_h, limit_w = int(h * max_fraction), int(w * max_fraction)
    while top < limit_h and _frame_line(luma[top, left:right], share):
        top += 1
    while h - bottom < limit_h and _frame_line(luma[bottom - 1, left:right], share):
        bottom -= 1
    while left < limit_w and _frame_line(luma[top:bottom, left], share):
        left += 1
    while w - right < limit_w and _frame_line(luma[top:bottom, right - 1], share):
        right -= 1
    # One more line where a frame was found: its edge is blended with the paint by resampling.
    top, left = top + (top > 0), left + (left > 0)
    bottom, right = bottom - (bottom < h), right - (right < w)
    return top, bottom, left, right


def trim_frame(rgb: np.ndarray, max_fraction: float = 0.06) -> np.ndarray:
    """The painting (HxWxC uint8) without a dark or white frame; unchanged when it has none."""
    top, bottom, left, right = frame_box(rgb, max_fraction)
    return rgb[top:bottom, left:right]
