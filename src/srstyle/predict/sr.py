"""Super-resolution of uint8 RGB images: Y models (BT.601 luma through the model, CbCr bicubic) and RGB models.

Memory is bounded by one tile plus the uint8 output: colour conversion, the model call and chroma
upsampling all happen per tile, in float32. Tiles are extended by ``overlap`` LR pixels of context on each
side (default: the model's receptive radius, so tiled output == whole-image output) and the chroma by 3
pixels (bicubic's support is 2), then cropped to their kept box.

The work is split so a caller can batch model calls across requests::

    plan = predictor.prepare(rgb, tile=256)          # cheap: boxes and the output buffer
    outputs = [predictor.run(x) for x in predictor.inputs(plan)]   # or any batching runner
    sr = predictor.assemble(plan, outputs)           # uint8 (H*s, W*s, 3)

``predictor.upscale(rgb)`` does the same one tile at a time (only one tile's floats alive at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..color import rgb_to_ycbcr_studio_f32, ycbcr_studio_f32_to_rgb_u8
from ..resize import bicubic_float
from ..tiling import run_tiled, self_ensemble, tile_boxes
from .images import ImageError

Runner = Callable[[np.ndarray], np.ndarray]
Box = tuple[int, int, int, int]  # y0, y1, x0, x1 in LR pixels
_CHROMA_MARGIN = 3  # LR pixels: PIL bicubic upsampling reads 2 on each side


class ModelLoadError(ValueError):
    """The model path or URI cannot be loaded; the message says what was expected."""


@dataclass
class TilePlan:
    """One image's tiling: the LR input, the (kept, padded) boxes and the uint8 output being filled."""

    rgb: np.ndarray
    boxes: list[tuple[Box, Box]]
    out: np.ndarray
    placed: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.boxes)


def _luma_f32(rgb: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> BT.601 studio Y / 255 as float32 HxW (the models' input scale)."""
    y = rgb_to_ycbcr_studio_f32(rgb, (0,))[..., 0]
    y *= np.float32(1 / 255)
    return y


def _chroma_f32(rgb: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> studio Cb, Cr (0-255 scale) as float32 HxWx2."""
    return rgb_to_ycbcr_studio_f32(rgb, (1, 2))


@dataclass
class SRPredictor:
    """An SR model as a function on float32 NCHW arrays in [0, 1] plus its conventions.

    ``run`` is the raw model call ([N,C,h,w] -> [N,C,h*s,w*s]); built by :meth:`from_onnx` (onnxruntime,
    through :func:`srstyle.engine.open_sr_engine`: onnxruntime or OpenVINO) or by the CLI's PyTorch adapter (``srstyle.inference``).
    ``tile``/``overlap``/``ensemble`` are the defaults :meth:`upscale` uses.
    """

    run: Runner
    scale: int
    color: str  # "y" or "rgb"
    source: str
    receptive_radius: int | None = None
    tile: int = 0
    overlap: int | None = None
    ensemble: bool = False
    engine: object | None = None  # the OrtEngine/OvEngine behind ``run`` (None: PyTorch)
    input_kind: str = "lr"

    @classmethod
    def from_onnx(cls, path: Path | str, engine=None, precision: str | None = None) -> "SRPredictor":
        """An exported ``.onnx`` SR model; ``engine``: EngineConfig (backend, precision, threads);
        ``precision`` ("auto"/"fp32"/"bf16"/"int8") overrides ``engine.precision``. A path to an
        ``.int8.onnx`` file runs as int8 unless a precision is given."""
        from ..engine import EngineError, open_sr_engine

        path = Path(path)
        try:
            eng = open_sr_engine(path, engine, precision)
        except EngineError as exc:
            raise ModelLoadError(str(exc)) from None
        if eng.meta.get("input_kind", "lr") != "lr":
            raise ModelLoadError(f"{path}: expects input {eng.meta['input_kind']!r}; re-export it with srstyle (LR input)")
        if eng.color not in ("y", "rgb"):
            raise ModelLoadError(f"{path}: unknown colour mode {eng.color!r} in its metadata (expected y or rgb)")
        return cls(eng.run, eng.scale, eng.color, str(eng.path), receptive_radius=eng.receptive_radius, engine=eng)

    @property
    def channels(self) -> int:
        return 1 if self.color == "y" else 3

    def describe(self) -> dict:
        return {"source": self.source, "scale": self.scale, "color": self.color,
                "receptive_radius": self.receptive_radius}

    # -- whole arrays (NCHW floats) ---------------------------------------------------------------------
    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 [N,C,h,w] -> [N,C,h*s,w*s], tiled when ``tile`` is set, x8 ensemble when ``ensemble``."""

        def once(a: np.ndarray) -> np.ndarray:
            if self.tile and max(a.shape[2:]) > self.tile:
                return run_tiled(self.run, a, self.scale, self.tile, self._overlap())
            return self.run(a)

        return self_ensemble(once, x) if self.ensemble else once(x)

    def _overlap(self, overlap: int | None = None) -> int:
        if overlap is not None:
            return overlap
        if self.overlap is not None:
            return self.overlap
        return self.receptive_radius if self.receptive_radius is not None else 16

    # -- uint8 RGB images, split for batching -------------------------------------------------------------
    def check_size(self, h: int, w: int, max_output_pixels: int | None) -> None:
        if max_output_pixels is not None and h * w * self.scale**2 > max_output_pixels:
            raise ImageError(f"image: {w}x{h} x{self.scale} would be {w * self.scale}x{h * self.scale} = "
                             f"{h * w * self.scale**2} output pixels, over the limit of {max_output_pixels}")

    def prepare(self, rgb: np.ndarray, tile: int | None = None, overlap: int | None = None,
                max_output_pixels: int | None = None) -> TilePlan:
        """Plan the tiles of an HxWx3 uint8 image and allocate its uint8 output."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 RGB array, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        self.check_size(h, w, max_output_pixels)
        tile = self.tile if tile is None else tile
        side = tile if tile and tile < max(h, w) else max(h, w)
        boxes = tile_boxes(h, w, side, self._overlap(overlap))
        out = np.empty((h * self.scale, w * self.scale, 3), np.uint8)
        return TilePlan(rgb, boxes, out, [False] * len(boxes))

    def tile_input(self, plan: TilePlan, i: int) -> np.ndarray:
        """The model input of tile ``i``: float32 [1, C, ph, pw] in [0, 1]."""
        py0, py1, px0, px1 = plan.boxes[i][1]
        region = plan.rgb[py0:py1, px0:px1]
        if self.color == "y":
            return _luma_f32(region)[None, None]
        x = region.astype(np.float32).transpose(2, 0, 1)[None]
        x *= np.float32(1 / 255)
        return np.ascontiguousarray(x)

    def inputs(self, plan: TilePlan) -> list[np.ndarray]:
        return [self.tile_input(plan, i) for i in range(len(plan))]

    def place(self, plan: TilePlan, i: int, output: np.ndarray) -> None:
        """Write tile ``i``'s model output (float32 [1, C, ph*s, pw*s]) into the plan's uint8 image."""
        s = self.scale
        (y0, y1, x0, x1), (py0, py1, px0, px1) = plan.boxes[i]
        expected = (1, self.channels, (py1 - py0) * s, (px1 - px0) * s)
        if tuple(output.shape) != expected:
            raise ValueError(f"tile {i}: model output shape {tuple(output.shape)} != expected {expected}")
        oy, ox = (y0 - py0) * s, (x0 - px0) * s
        kept = output[0, :, oy : oy + (y1 - y0) * s, ox : ox + (x1 - x0) * s]
        dst = plan.out[y0 * s : y1 * s, x0 * s : x1 * s]
        if self.color == "rgb":
            t = kept.transpose(1, 2, 0) * np.float32(255.0)
            np.rint(t, out=t)
            np.clip(t, 0, 255, out=t)
            dst[...] = t
        else:
            h, w = plan.rgb.shape[:2]
            m = _CHROMA_MARGIN
            cy0, cy1, cx0, cx1 = max(y0 - m, 0), min(y1 + m, h), max(x0 - m, 0), min(x1 + m, w)
            chroma = _chroma_f32(plan.rgb[cy0:cy1, cx0:cx1])
            ycc = np.empty((*dst.shape[:2], 3), np.float32)
            np.multiply(kept[0], np.float32(255.0), out=ycc[..., 0])
            ry, rx = (y0 - cy0) * s, (x0 - cx0) * s
            for c in (0, 1):
                up = bicubic_float(chroma[..., c], ((cy1 - cy0) * s, (cx1 - cx0) * s))
                ycc[..., 1 + c] = up[ry : ry + (y1 - y0) * s, rx : rx + (x1 - x0) * s]
            dst[...] = ycbcr_studio_f32_to_rgb_u8(ycc)
        plan.placed[i] = True

    def assemble(self, plan: TilePlan, outputs: list[np.ndarray]) -> np.ndarray:
        """Place every tile's output (in :meth:`inputs` order); returns the uint8 (H*s, W*s, 3) image."""
        if len(outputs) != len(plan):
            raise ValueError(f"{len(outputs)} tile outputs for a plan of {len(plan)} tiles")
        for i, output in enumerate(outputs):
            self.place(plan, i, output)
        return plan.out

    def upscale(self, rgb: np.ndarray, tile: int | None = None, overlap: int | None = None,
                ensemble: bool | None = None, max_output_pixels: int | None = None) -> np.ndarray:
        """HxWx3 uint8 RGB -> (H*s)x(W*s)x3 uint8, one tile at a time."""
        plan = self.prepare(rgb, tile, overlap, max_output_pixels)
        use_ensemble = self.ensemble if ensemble is None else ensemble
        for i in range(len(plan)):
            x = self.tile_input(plan, i)
            self.place(plan, i, self_ensemble(self.run, x) if use_ensemble else self.run(x))
        return plan.out

    def luma(self, rgb: np.ndarray) -> np.ndarray:
        """SR luma (0-255 scale, rounded to 8 bits as a saved image would be) for an LR RGB image."""
        from ..color import rgb_to_y

        if self.color == "rgb":
            return rgb_to_y(self.upscale(rgb))

        # the evaluation protocol's exact arithmetic (float64 Y rounded once to float32), so metrics stay put
        x = rgb_to_y(rgb).astype(np.float32) / 255.0
        return np.clip(np.rint(self.predict(x[None, None])[0, 0] * 255.0), 0, 255)
