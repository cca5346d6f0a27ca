"""The prediction core: uint8 RGB in, uint8 RGB out, through onnxruntime; no torch, no training code.

Every consumer uses it: ``srstyle upscale|stylize`` (images and video), the service, the int8 evaluation
and the comparison pictures. A trainer ``model.pt`` reaches it through the CLI's PyTorch adapter
(:mod:`srstyle.inference`), which builds the same predictor objects around a torch module.

API (stable)::

    from srstyle.predict import decode_image, encode_image, ImageError, SRPredictor, StylePredictor, MetaStylePredictor

    rgb = decode_image(data_or_path, allowed_formats=("PNG", "JPEG", "WEBP", "BMP", "TIFF"),
                       max_pixels=4_000_000, max_bytes=20_000_000)     # HxWx3 uint8; ImageError (ValueError)
    png = encode_image(rgb, "png", png_level=1)                          # or "jpeg"/"webp", quality=90

    sr = SRPredictor.from_onnx("espcn_x3.onnx", engine_cfg, precision=None)   # ModelLoadError on a bad file
    sr.scale, sr.color, sr.receptive_radius                               # metadata of the export
    sr.run(batch)                                # raw model call: float32 [N,C,h,w] in [0,1] -> [N,C,h*s,w*s]
    out = sr.upscale(rgb, tile=256, max_output_pixels=None)              # uint8 (H*s, W*s, 3)
    plan = sr.prepare(rgb, tile=256)                                      # split form, for batching runners:
    xs = sr.inputs(plan)                          # list of float32 [1,C,ph,pw] (tile shapes vary at the edges)
    out = sr.assemble(plan, [sr.run(x) for x in xs])                      # outputs in the same order

    fast = StylePredictor.from_onnx("fast_starry_night.onnx", engine_cfg)
    out = fast.stylize(rgb, preserve_color=False)                         # same size, uint8
    meta = MetaStylePredictor.from_onnx("metanet.onnx")                   # transformer.onnx beside it
    theta = meta.weights(painting_rgb)                                    # once per painting
    out = meta.stylize(content_rgb, painting_rgb)  # or meta.stylize(content_rgb, weights=theta)
"""

from .images import ALLOWED_FORMATS, DEFAULT_MAX_PIXELS, ImageError, decode_image, encode_image
from .sr import ModelLoadError, SRPredictor, TilePlan
from .style import MetaStylePredictor, StylePredictor

__all__ = ["ALLOWED_FORMATS", "DEFAULT_MAX_PIXELS", "ImageError", "ModelLoadError", "MetaStylePredictor",
           "SRPredictor", "StylePredictor", "TilePlan", "decode_image", "encode_image"]
