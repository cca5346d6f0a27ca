"""Style-transfer inference for every consumer (CLI, evaluation, export checks).

``Stylizer`` wraps the three methods behind one call ``stylizer(content, style=None) -> image``:
a trained Johnson network (fixed style), the meta network (any style image, one forward pass for the
weights, one for the image) and Gatys optimisation (any style image, minutes).

Colour preservation follows Gatys et al. 2017 ("Controlling Perceptual Factors in Neural Style Transfer"),
luminance-only transfer: for Gatys the optimisation runs on luminance images, the style's luminance first
matched to the content's mean and spread; feed-forward networks are applied as trained and their output's
luminance is kept. Either way the result's chroma is the content's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import BackboneConfig, GatysConfig

log = logging.getLogger(__name__)

# JPEG/JFIF full-range YCbCr: colour preservation is a perceptual operation, not an SR benchmark protocol.
# (srstyle.color.rgb_to_ycbcr_full is the same conversion on numpy arrays, for the prediction core.)
_KR, _KB = 0.299, 0.114


def tensor_rgb_to_ycbcr_full(x: Tensor) -> Tensor:
    """(N,3,H,W) RGB in [0,1] -> JPEG full-range YCbCr in [0,1]."""
    r, g, b = x.unbind(1)
    y = _KR * r + (1 - _KR - _KB) * g + _KB * b
    return torch.stack([y, (b - y) / (2 * (1 - _KB)) + 0.5, (r - y) / (2 * (1 - _KR)) + 0.5], 1)


def tensor_ycbcr_full_to_rgb(x: Tensor) -> Tensor:
    """Inverse of :func:`tensor_rgb_to_ycbcr_full`, clamped to [0, 1]."""
    y, cb, cr = x.unbind(1)
    r = y + 2 * (1 - _KR) * (cr - 0.5)
    b = y + 2 * (1 - _KB) * (cb - 0.5)
    g = (y - _KR * r - _KB * b) / (1 - _KR - _KB)
    return torch.stack([r, g, b], 1).clamp(0, 1)


def luminance(x: Tensor) -> Tensor:
    return tensor_rgb_to_ycbcr_full(x)[:, :1]


def keep_content_colour(stylised: Tensor, content: Tensor) -> Tensor:
    """The stylised image's luminance with the content's chroma (same size)."""
    ycc = tensor_rgb_to_ycbcr_full(content)
    return tensor_ycbcr_full_to_rgb(torch.cat([luminance(stylised), ycc[:, 1:]], 1))


def luminance_inputs(content: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
    """Grey (3-channel) content and style luminances, the style's matched to the content's mean and std."""
    yc, ys = luminance(content), luminance(style)
    ys = (ys - ys.mean()) * (yc.std() / ys.std().clamp_min(1e-6)) + yc.mean()
    return yc.expand(-1, 3, -1, -1).clamp(0, 1), ys.expand(-1, 3, -1, -1).clamp(0, 1)


@dataclass
class Stylizer:
    method: str                      # fast | meta | gatys
    net: nn.Module | None = None
    backbone: nn.Module | None = None       # meta: the VGG that describes style images
    gatys_cfg: GatysConfig | None = None
    gatys_loss: nn.Module | None = None
    style_size: int = 256
    device: torch.device = torch.device("cpu")
    gatys_precision: str = "fp32"           # style.gatys.precision resolved for the device (auto decided)

    @classmethod
    def from_model_file(cls, path: Path | str, backbone_cfg: BackboneConfig | None = None, style_size: int = 256,
                        device: str | torch.device = "cpu") -> "Stylizer":
        from .models.style.metanet import META_TAPS
        from .models.backbones import build_backbone
        from .train.style import load_style_net

        net, info = load_style_net(path, device)
        if info["kind"] == "fast":
            return cls("fast", net=net, device=torch.device(device))
        cfg = backbone_cfg or BackboneConfig()
        backbone = build_backbone(cfg.arch, list(META_TAPS), cfg.weights, cfg.allow_random_init, cfg.pooling).to(device)
        if info.get("backbone") and not info["backbone"].startswith(backbone.description.split(" served")[0]):
            raise ValueError(f"{path}: trained with backbone {info['backbone']!r}, but style.backbone gives "
                             f"{backbone.description!r}; set style.backbone as in training")
        return cls("meta", net=net, backbone=backbone, style_size=style_size, device=torch.device(device))

    @classmethod
    def gatys(cls, cfg: GatysConfig, device: str | torch.device = "cpu") -> "Stylizer":
        from .train.precision import resolve_precision
        from .train.style import build_style_loss

        device = torch.device(device)
        choice = resolve_precision(cfg.precision, device, setting="style.gatys.precision")
        log.info("gatys: loss network in %s (%s)", choice.precision, choice.reason)
        return cls("gatys", gatys_cfg=cfg, gatys_loss=build_style_loss(cfg.loss, cfg.backbone).to(device),
                   device=device, gatys_precision=choice.precision)

    @torch.no_grad()
    def weights_for(self, style: Tensor) -> Tensor:
        """Meta network: the generated transformer weights for one style image (1, 3, H, W)."""
        from .models.style.metanet import style_statistics
        from .models.style.gatys import resize_to

        feats = self.backbone(resize_to(style.to(self.device), self.style_size))
        return self.net(style_statistics(feats))[0]

    def __call__(self, content: Tensor, style: Tensor | None = None, *, preserve_color: bool = False,
                 iterations: list[int] | None = None, sizes: list[int] | None = None, progress: bool = False) -> Tensor:
        content = content.to(self.device)
        if self.method == "gatys":
            if style is None:
                raise ValueError("gatys needs a style image")
            from .models.style.gatys import gatys_transfer

            c, s = luminance_inputs(content, style.to(self.device)) if preserve_color else (content, style)
            sizes = sizes or [max(content.shape[-2:])] * len(iterations or self.gatys_cfg.iterations)
            out = gatys_transfer(c, s, self.gatys_cfg, self.gatys_loss, iterations=iterations, sizes=sizes,
                                 device=self.device, precision=self.gatys_precision, progress=progress).image
            if out.shape[-2:] != content.shape[-2:]:
                out = torch.nn.functional.interpolate(out, size=content.shape[-2:], mode="bicubic", align_corners=False)
        else:
            with torch.no_grad():
                if self.method == "fast":
                    out = self.net(content)
                else:
                    if style is None:
                        raise ValueError("the meta network needs a style image (--style-image)")
                    out = self.net.transformer(content, self.weights_for(style))
        out = out.clamp(0, 1)
        return keep_content_colour(out, content) if preserve_color else out


class StylizeError(ValueError):
    """A stylize request that cannot be served; the message says what to give instead."""


def find_painting(name: str, root: Path) -> Path:
    """A style image by name: the project's validated paintings first, then the embedded set."""
    from .data.style_data import StylePaths, embedded_styles_dir

    candidates = sorted(StylePaths(root).raw("styles").glob(f"*/{name}.*")) + sorted(embedded_styles_dir().glob(f"{name}.*"))
    if not candidates:
        raise StylizeError(f"no painting named {name!r} in data/style/raw/styles or the embedded set; pass --style-image FILE")
    return candidates[0]


def _default_model(paths, method: str, style: str | None) -> Path:
    """The pipeline's model: the exported ONNX file when present (the core runs it), else the trainer's
    model.pt (PyTorch adapter)."""
    if method == "meta":
        onnx_file, pt_file = paths.onnx_dir / "metanet.onnx", paths.meta_model_dir / "model.pt"
    else:
        onnx_file, pt_file = paths.onnx_dir / f"fast_{style}.onnx", paths.fast_model_dir(style) / "model.pt"
    if onnx_file.is_file() and (onnx_file.parent / ("transformer.onnx" if method == "meta" else onnx_file.name)).is_file():
        return onnx_file
    if pt_file.is_file():
        return pt_file
    if method == "meta":
        raise StylizeError(f"no trained meta network at {onnx_file} or {pt_file}; run `dvc repro` (train_meta), "
                           "or pass --model")
    trained = sorted(p.parent.name for p in (paths.base / "models" / "fast").glob("*/model.pt"))
    raise StylizeError(f"no trained fast model for style {style!r} at {onnx_file} or {pt_file}; trained: "
                       f"{trained or 'none'}. Add it to style.fast.styles and run dvc repro, or use --style-image "
                       "(meta network)")


def style_function(*, root: Path, params, style: str | None = None, style_image: str | None = None,
                   method: str | None = None, model: str | None = None, preserve_color: bool = False,
                   max_pixels: int = 40_000_000, engine=None):
    """The feed-forward style transfer a user asked for, as ``(rgb uint8 -> rgb uint8, description)``.

    Runs through the prediction core: ONNX files on onnxruntime, a ``model.pt`` through the PyTorch adapter.
    """
    from .data.style_data import StylePaths
    from .inference import load_style_model
    from .predict import MetaStylePredictor, ModelLoadError, StylePredictor, decode_image

    paths = StylePaths(root)
    method = method or ("meta" if style_image else "fast")
    if method not in ("fast", "meta"):
        raise StylizeError(f"unknown method {method!r}; choose fast, meta or gatys")
    if method == "meta" and not (style_image or style):
        raise StylizeError("the meta network needs --style-image FILE (any painting)")
    if method == "fast" and not (style or model):
        raise StylizeError("give --style NAME (a trained fast model), --style-image FILE, or --method gatys")
    used = Path(model) if model else _default_model(paths, method, style)
    try:
        predictor = load_style_model(used, engine, params.style.backbone, params.style.meta.style_size)
    except ModelLoadError as exc:
        raise StylizeError(str(exc)) from None
    if method == "fast":
        if not isinstance(predictor, StylePredictor):
            raise StylizeError(f"{used} is a meta network: pass --style-image FILE (or --method meta)")
        return (lambda rgb: predictor.stylize(rgb, preserve_color=preserve_color)), {"method": "fast", "model": str(used)}
    if not isinstance(predictor, MetaStylePredictor):
        raise StylizeError(f"{used} is a fast style network, not the meta network: use --style NAME with it")
    painting_file = Path(style_image) if style_image else find_painting(style, root)
    weights = predictor.weights(decode_image(painting_file, max_pixels=max_pixels))  # once per painting
    return ((lambda rgb: predictor.stylize(rgb, weights=weights, preserve_color=preserve_color)),
            {"method": "meta", "model": str(used), "painting": str(painting_file)})


def stylize_file(content: Path | str, output: Path | str, *, root: Path, params, style: str | None = None,
                 style_image: str | None = None, method: str | None = None, model: str | None = None,
                 preserve_color: bool = False, content_scale: float = 1.0, max_pixels: int = 40_000_000,
                 progress: bool = True, engine=None) -> dict:
    """Stylise one image file; returns what was done (method, model, sizes, seconds).

    fast/meta run through the prediction core; gatys is an optimisation (PyTorch, minutes).
    ``max_pixels`` bounds the input and, with ``content_scale``, the image the network actually sees.
    """
    import time

    from .data.style_data import resize_longest
    from .io import save_image
    from .predict import decode_image
    from .predict.images import ImageError, format_for_path, same_file

    output = Path(output)
    format_for_path(output)
    if same_file(content, output):
        raise StylizeError(f"{output}: the output is the input file; choose another output name (the input is kept)")
    if not 0 < content_scale <= 8:
        raise StylizeError(f"--content-scale must be in (0, 8], got {content_scale}")
    rgb = decode_image(content, max_pixels=max_pixels)
    if content_scale != 1.0:
        h, w = rgb.shape[:2]
        longest = max(16, round(max(h, w) * content_scale))
        nh, nw = max(1, round(h * longest / max(h, w))), max(1, round(w * longest / max(h, w)))
        if nh * nw > max_pixels:  # checked before resizing: the scaled image is what the network sees
            raise ImageError(f"{content}: --content-scale {content_scale} makes it {nw}x{nh} = {nw * nh} pixels, "
                             f"over the limit of {max_pixels} (--max-pixels)")
        rgb = resize_longest(rgb, longest)
    method = method or ("meta" if style_image else "fast")
    start = time.perf_counter()
    if method == "gatys":
        out, done = _gatys(rgb, root=root, params=params, style=style, style_image=style_image,
                           preserve_color=preserve_color, max_pixels=max_pixels, progress=progress)
    else:
        fn, done = style_function(root=root, params=params, style=style, style_image=style_image, method=method,
                                  model=model, preserve_color=preserve_color, max_pixels=max_pixels, engine=engine)
        out = fn(rgb)
    save_image(out, output)
    return {**done, "size": [int(rgb.shape[1]), int(rgb.shape[0])],
            "seconds": round(time.perf_counter() - start, 3), "output": str(output)}


def _gatys(rgb, *, root: Path, params, style, style_image, preserve_color: bool, max_pixels: int, progress: bool):
    from .data.style_data import to_tensor, to_uint8
    from .predict import decode_image

    if not (style or style_image):
        raise StylizeError("--method gatys needs --style NAME or --style-image FILE")
    painting_file = Path(style_image) if style_image else find_painting(style, root)
    painting = to_tensor(decode_image(painting_file, max_pixels=max_pixels))[None]
    stylizer = Stylizer.gatys(params.style.gatys)
    out = stylizer(to_tensor(rgb)[None], painting, preserve_color=preserve_color, progress=progress)
    return to_uint8(out[0]), {"method": "gatys", "model": f"gatys ({sum(params.style.gatys.iterations)} L-BFGS iterations)",
                              "painting": str(painting_file)}
