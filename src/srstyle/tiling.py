"""Large images: tiled inference with overlap, geometric self-ensemble, and receptive-field measurement.

A fully convolutional SR model's output pixel depends on the input within its receptive radius r (in LR
pixels). Running the model on tiles extended by ``overlap >= r`` on every side (clipped at the image
border, where whole-image inference sees the same zero padding) and keeping each tile's centre gives the
same output as whole-image inference, with memory bounded by the tile size instead of the image size.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


def tile_boxes(h: int, w: int, tile: int, overlap: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """(kept box, padded box) pairs, each (y0, y1, x0, x1) in input pixels, covering an h x w image."""
    if tile <= 0 or overlap < 0:
        raise ValueError(f"tile must be > 0 and overlap >= 0 (got tile={tile}, overlap={overlap})")
    boxes = []
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            padded = (max(y0 - overlap, 0), min(y1 + overlap, h), max(x0 - overlap, 0), min(x1 + overlap, w))
            boxes.append(((y0, y1, x0, x1), padded))
    return boxes


def place_tile(out: np.ndarray, result: np.ndarray, kept: tuple, padded: tuple, scale: int) -> None:
    """Copy the kept centre of one tile's output into ``out``."""
    y0, y1, x0, x1 = kept
    oy, ox = (y0 - padded[0]) * scale, (x0 - padded[2]) * scale
    out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = result[
        :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
    ]


def run_tiled(run: Runner, x: np.ndarray, scale: int, tile: int = 128, overlap: int = 16) -> np.ndarray:
    """Apply ``run`` to (N, C, H, W) ``x`` tile by tile; returns (N, C, H*scale, W*scale) float32."""
    n, c, h, w = x.shape
    out: np.ndarray | None = None
    for kept, (py0, py1, px0, px1) in tile_boxes(h, w, tile, overlap):
        result = run(np.ascontiguousarray(x[:, :, py0:py1, px0:px1]))
        if out is None:
            out = np.empty((n, result.shape[1], h * scale, w * scale), dtype=np.float32)
        place_tile(out, result, kept, (py0, py1, px0, px1), scale)
    assert out is not None
    return out


def self_ensemble(run: Runner, x: np.ndarray) -> np.ndarray:
    """EDSR+'s x8 geometric self-ensemble: average the outputs for the 8 flips/rotations of the input."""
    total = None
    for k in range(4):
        for flip in (False, True):
            t = np.rot90(x, k, axes=(2, 3))
            if flip:
                t = t[..., ::-1]
            y = run(np.ascontiguousarray(t))
            if flip:
                y = y[..., ::-1]
            y = np.rot90(y, -k, axes=(2, 3))
            total = y.astype(np.float64) if total is None else total + y
    return (total / 8).astype(np.float32)


def receptive_radius(model, channels: int, start: int = 8, limit: int = 512) -> int:
    """Receptive radius in input pixels, measured as the support of d(centre output)/d(input).

    The input grows until the support stops short of its border. Random weights and inputs make a
    structurally present path vanish only with negligible probability; one pixel of margin is added.
    Needs PyTorch (imported here only: the tiling itself is torch-free).
    """
    import torch

    model = model.eval()
    scale = int(getattr(model, "scale", 1))
    r = start
    while r <= limit:
        size = 2 * r + 1
        x = torch.rand(1, channels, size, size, generator=torch.Generator().manual_seed(0), requires_grad=True)
        y = model(x)
        c = (size * scale) // 2
        y[0, :, c, c].sum().backward()
        support = (x.grad[0].abs().sum(0) > 0).nonzero()
        extent = int(max((support - r).abs().max().item(), 0))
        if extent < r - 1:
            return extent + 1
        r *= 2
    raise ValueError(f"receptive field larger than {limit} px: not a fully convolutional SR model?")
