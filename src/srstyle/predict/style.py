"""Style transfer of uint8 RGB images: a fast (Johnson) network, or the meta network for any painting.

* :class:`StylePredictor`: ``content`` float32 [N,3,H,W] in [0,1] -> ``stylised`` (``fast_<style>.onnx``).
* :class:`MetaStylePredictor`: ``metanet.onnx`` turns a painting (longest side = the training style size)
  into the generated transformer weights [K] once; ``transformer.onnx`` applies them to any number of
  images or frames.

No tiling: instance normalisation makes every output pixel depend on the whole image. Colour preservation
(luminance-only transfer, Gatys et al. 2017) keeps the content's JPEG full-range chroma and the stylised
luminance, as :func:`srstyle.stylize.keep_content_colour` does on tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..color import rgb_to_ycbcr_full, ycbcr_full_to_rgb
from ..painting_frame import trim_frame
from ..resize import bicubic_float
from .sr import ModelLoadError


def to_nchw(rgb: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float32 [1,3,H,W] in [0, 1]."""
    x = rgb.astype(np.float32).transpose(2, 0, 1)[None]
    x *= np.float32(1 / 255)
    return np.ascontiguousarray(x)


def to_rgb_u8(x: np.ndarray) -> np.ndarray:
    """float [3,H,W] in [0, 1] -> uint8 HxWx3 (clipped, rounded half to even as torch.round does)."""
    t = np.clip(x.transpose(1, 2, 0), 0, 1) * np.float32(255.0)
    return np.rint(t).astype(np.uint8)


def keep_content_colour(stylised: np.ndarray, content: np.ndarray) -> np.ndarray:
    """HxWx3 float [0,1]: the stylised luminance with the content's chroma (full-range YCbCr)."""
    ycc = rgb_to_ycbcr_full(content)
    ycc[..., 0] = rgb_to_ycbcr_full(stylised)[..., 0]
    return ycbcr_full_to_rgb(ycc)


def _finish(out: np.ndarray, content_rgb: np.ndarray, preserve_color: bool) -> np.ndarray:
    out = np.clip(out, 0, 1)
    if not preserve_color:
        return to_rgb_u8(out)
    kept = keep_content_colour(out.transpose(1, 2, 0), content_rgb.astype(np.float32) / np.float32(255.0))
    return to_rgb_u8(kept.transpose(2, 0, 1))


def resize_longest_float(x: np.ndarray, longest: int) -> np.ndarray:
    """float32 [1,3,H,W] in [0,1] resized (antialiased bicubic, per channel, no 8-bit rounding) so its
    longest side is ``longest``; the size rule of the trainer's ``resize_to``."""
    h, w = x.shape[-2:]
    scale = longest / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return x
    out = np.stack([bicubic_float(x[0, c], size) for c in range(3)])[None]
    return np.clip(out, 0, 1, out=out)


def _load(path: Path | str, engine, method: str):
    from ..engine import EngineError, open_model

    try:
        model = open_model(path, engine)
    except EngineError as exc:
        raise ModelLoadError(str(exc)) from None
    found = model.meta.get("method")
    if found != method:
        kind = {"johnson": "a fast style network", "meta": "a meta-network graph"}.get(found, f"method {found!r}")
        raise ModelLoadError(f"{path}: this ONNX file is {kind if found else 'not an srstyle style export'}; "
                             f"expected {'a fast style network (fast_<style>.onnx)' if method == 'johnson' else 'metanet.onnx + transformer.onnx'}")
    return model


class StylePredictor:
    """A fast style network: ``run`` float32 [N,3,H,W] in [0,1] -> [N,3,H,W]."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], source: str, style: str | None = None, engine=None):
        self.run, self.source, self.style, self.engine = run, source, style, engine

    @classmethod
    def from_onnx(cls, path: Path | str, engine=None) -> "StylePredictor":
        model = _load(path, engine, "johnson")
        name = model.input_names[0]
        return cls(lambda x: model.run_feeds({name: np.ascontiguousarray(x, np.float32)})[0], str(path),
                   model.meta.get("style"), model)

    def stylize(self, rgb: np.ndarray, preserve_color: bool = False) -> np.ndarray:
        """HxWx3 uint8 -> HxWx3 uint8."""
        return _finish(self.run(to_nchw(rgb))[0], rgb, preserve_color)

    def describe(self) -> dict:
        return {"source": self.source, "method": "fast", "style": self.style}


class MetaStylePredictor:
    """The meta network: ``to_weights`` float32 [1,3,h,w] painting -> [1,K]; ``transform`` (content [N,3,H,W],
    weights [K]) -> stylised [N,3,H,W]."""

    def __init__(self, to_weights: Callable[[np.ndarray], np.ndarray],
                 transform: Callable[[np.ndarray, np.ndarray], np.ndarray], style_size: int, source: str,
                 engines: tuple = ()):
        self.to_weights, self.transform = to_weights, transform
        self.style_size, self.source, self.engines = style_size, source, engines

    @classmethod
    def from_onnx(cls, metanet_path: Path | str, transformer_path: Path | str | None = None,
                  engine=None) -> "MetaStylePredictor":
        metanet_path = Path(metanet_path)
        transformer_path = Path(transformer_path) if transformer_path else metanet_path.with_name("transformer.onnx")
        meta, tr = _load(metanet_path, engine, "meta"), _load(transformer_path, engine, "meta")
        if "weights" not in meta.output_names or set(tr.input_names) != {"content", "weights"}:
            raise ModelLoadError(f"{metanet_path}, {transformer_path}: expected metanet.onnx (style -> weights) and "
                                 "transformer.onnx (content, weights -> stylised)")
        if meta.meta.get("generated_weights") != tr.meta.get("generated_weights"):
            raise ModelLoadError(f"{metanet_path} and {transformer_path} come from different meta networks "
                                 "(generated_weights differ); export them together")
        style_size = int(meta.meta.get("style_size", 256))

        def to_weights(x: np.ndarray) -> np.ndarray:
            return meta.run_feeds({meta.input_names[0]: np.ascontiguousarray(x, np.float32)})[0]

        def transform(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
            return tr.run_feeds({"content": np.ascontiguousarray(x, np.float32),
                                 "weights": np.ascontiguousarray(weights, np.float32).reshape(-1)})[0]

        return cls(to_weights, transform, style_size, str(metanet_path.parent), (meta, tr))

    def weights(self, painting_rgb: np.ndarray) -> np.ndarray:
        """A painting (HxWx3 uint8, any size; a dark or white frame is cut off) -> its generated transformer
        weights, float32 [K]."""
        x = resize_longest_float(to_nchw(trim_frame(painting_rgb)), self.style_size)
        return np.asarray(self.to_weights(x), np.float32).reshape(-1)

    def stylize(self, content_rgb: np.ndarray, painting_rgb: np.ndarray | None = None, *,
                weights: np.ndarray | None = None, preserve_color: bool = False) -> np.ndarray:
        """Content HxWx3 uint8 in the style of ``painting_rgb`` (or of precomputed ``weights``)."""
        if weights is None:
            if painting_rgb is None:
                raise ValueError("the meta network needs a painting (or its weights)")
            weights = self.weights(painting_rgb)
        return _finish(self.transform(to_nchw(content_rgb), weights)[0], content_rgb, preserve_color)

    def describe(self) -> dict:
        return {"source": self.source, "method": "meta", "style_size": self.style_size}
