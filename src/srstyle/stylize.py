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

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import BackboneConfig, GatysConfig

# JPEG/JFIF full-range YCbCr: colour preservation is a perceptual operation, not an SR benchmark protocol.
_KR, _KB = 0.299, 0.114


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    y = _KR * r + (1 - _KR - _KB) * g + _KB * b
    return torch.stack([y, (b - y) / (2 * (1 - _KB)) + 0.5, (r - y) / (2 * (1 - _KR)) + 0.5], 1)


def ycbcr_to_rgb(x: Tensor) -> Tensor:
    y, cb, cr = x.unbind(1)
    r = y + 2 * (1 - _KR) * (cr - 0.5)
    b = y + 2 * (1 - _KB) * (cb - 0.5)
    g = (y - _KR * r - _KB * b) / (1 - _KR - _KB)
    return torch.stack([r, g, b], 1).clamp(0, 1)


def luminance(x: Tensor) -> Tensor:
    return rgb_to_ycbcr(x)[:, :1]


def keep_content_colour(stylised: Tensor, content: Tensor) -> Tensor:
    """The stylised image's luminance with the content's chroma (same size)."""
    ycc = rgb_to_ycbcr(content)
    return ycbcr_to_rgb(torch.cat([luminance(stylised), ycc[:, 1:]], 1))


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
        from .train.style import build_style_loss

        return cls("gatys", gatys_cfg=cfg, gatys_loss=build_style_loss(cfg.loss, cfg.backbone).to(device),
                   device=torch.device(device))

    @torch.no_grad()
    def weights_for(self, style: Tensor) -> Tensor:
        """Meta network: the generated transformer weights for one style image (1, 3, H, W)."""
        from .models.style.metanet import style_statistics
        from .train.gatys import resize_to

        feats = self.backbone(resize_to(style.to(self.device), self.style_size))
        return self.net(style_statistics(feats))[0]

    def __call__(self, content: Tensor, style: Tensor | None = None, *, preserve_color: bool = False,
                 iterations: list[int] | None = None, sizes: list[int] | None = None, progress: bool = False) -> Tensor:
        content = content.to(self.device)
        if self.method == "gatys":
            if style is None:
                raise ValueError("gatys needs a style image")
            from .train.gatys import gatys_transfer

            c, s = luminance_inputs(content, style.to(self.device)) if preserve_color else (content, style)
            sizes = sizes or [max(content.shape[-2:])] * len(iterations or self.gatys_cfg.iterations)
            out = gatys_transfer(c, s, self.gatys_cfg, self.gatys_loss, iterations=iterations, sizes=sizes,
                                 device=self.device, progress=progress).image
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


def stylize_file(content: Path | str, output: Path | str, *, root: Path, params, style: str | None = None,
                 style_image: str | None = None, method: str | None = None, model: str | None = None,
                 preserve_color: bool = False, content_scale: float = 1.0, max_pixels: int = 40_000_000,
                 progress: bool = True) -> dict:
    """Stylise one image file; returns what was done (method, model, sizes, seconds)."""
    import time

    from .data.style_data import StylePaths, load_image, resize_longest, to_tensor, to_uint8
    from .io import load_rgb, save_png

    output = Path(output)
    if output.suffix.lower() != ".png":
        raise StylizeError(f"output {output} must be a .png file (lossless)")
    if not 0 < content_scale <= 8:
        raise StylizeError(f"--content-scale must be in (0, 8], got {content_scale}")
    rgb = load_rgb(content, max_pixels=max_pixels)
    if content_scale != 1.0:
        rgb = resize_longest(rgb, max(16, round(max(rgb.shape[:2]) * content_scale)))
    x = to_tensor(rgb)[None]
    paths = StylePaths(root)
    method = method or ("meta" if style_image else "fast")
    start = time.perf_counter()
    if method == "gatys":
        if not (style or style_image):
            raise StylizeError("--method gatys needs --style NAME or --style-image FILE")
        painting = load_image(Path(style_image) if style_image else find_painting(style, root))
        stylizer = Stylizer.gatys(params.style.gatys)
        out = stylizer(x, painting, preserve_color=preserve_color, progress=progress)
        used = f"gatys ({sum(params.style.gatys.iterations)} L-BFGS iterations)"
    elif method == "meta":
        if not style_image and not style:
            raise StylizeError("the meta network needs --style-image FILE (any painting)")
        painting = load_image(Path(style_image) if style_image else find_painting(style, root))
        used = model or str(paths.meta_model_dir / "model.pt")
        stylizer = Stylizer.from_model_file(used, params.style.backbone, style_size=params.style.meta.style_size)
        out = stylizer(x, painting, preserve_color=preserve_color)
    elif method == "fast":
        if not style and not model:
            raise StylizeError("give --style NAME (a trained fast model), --style-image FILE, or --method gatys")
        used = model or str(paths.fast_model_dir(style) / "model.pt")
        if not Path(used).is_file():
            trained = sorted(p.parent.name for p in (paths.base / "models" / "fast").glob("*/model.pt"))
            raise StylizeError(f"no trained fast model for style {style!r} at {used}; trained: {trained or 'none'}. "
                               "Add it to style.fast.styles and run dvc repro, or use --style-image (meta network)")
        stylizer = Stylizer.from_model_file(used)
        if stylizer.method != "fast":
            raise StylizeError(f"{used} is a meta network: pass --style-image FILE")
        out = stylizer(x, preserve_color=preserve_color)
    else:
        raise StylizeError(f"unknown method {method!r}; choose fast, meta or gatys")
    save_png(to_uint8(out[0]), output)
    return {"method": method, "model": used, "size": [int(x.shape[-1]), int(x.shape[-2])],
            "seconds": round(time.perf_counter() - start, 3), "output": str(output)}
