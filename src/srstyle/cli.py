"""`srstyle` command line: user commands over the library (stages run through `dvc repro`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__

log = logging.getLogger("srstyle")


def _params(args: argparse.Namespace):
    from .config import ConfigError, Params, load_params

    try:
        return load_params(args.params) if Path(args.params).is_file() else Params()
    except ConfigError as exc:
        raise SystemExit(f"srstyle {args.command}: {exc}") from None


def _settings(args: argparse.Namespace):
    """params.yaml (engine, video sections) when present, else the defaults; --threads overrides."""
    params = _params(args)
    engine = params.engine
    if args.threads:
        engine = engine.model_copy(update={"intra_op_threads": args.threads})
    if getattr(args, "backend", None):
        engine = engine.model_copy(update={"backend": args.backend})
    return params, engine, args.precision


def _check_output(args: argparse.Namespace) -> None:
    """Refuse before any work: an output that is the input, or an image output of an unknown type."""
    from .predict.images import format_for_path, same_file
    from .video import is_video

    if same_file(args.input, args.output):
        raise SystemExit(f"srstyle {args.command}: output {args.output} is the input file; choose another output "
                         "name (the input is left untouched)")
    if not is_video(args.input):
        try:
            format_for_path(args.output)
        except ValueError as exc:
            raise SystemExit(f"srstyle {args.command}: {exc}") from None


def _load_model(args: argparse.Namespace, engine, precision):
    """The model through the engine; an .onnx file runs in ``precision`` (--precision) or else in
    engine.precision (params.yaml asks for int8 but the file has none: fp32, with a warning)."""
    from .engine import variant_path
    from .inference import ModelLoadError, load_sr_model

    onnx_file = str(args.model).endswith(".onnx")
    if precision is None and onnx_file and engine.precision == "int8" and not variant_path(args.model, "int8").is_file():
        log.warning("%s: no int8 variant; running it in fp32", args.model)
        engine = engine.model_copy(update={"precision": "fp32"})
    is_uri = str(args.model).startswith(("runs:/", "models:/")) or "://" in str(args.model)
    try:
        return load_sr_model(args.model, engine=engine, precision=precision if (onnx_file or is_uri) else None,
                             params_file=args.params)
    except ModelLoadError as exc:
        raise SystemExit(f"srstyle upscale: {exc}") from None


def _upscale_video(args: argparse.Namespace) -> int:
    from .video import VideoError, upscale_video

    params, engine, precision = _settings(args)
    engine = engine.model_copy(update={"allow_spinning": params.video.allow_spinning})
    model = _load_model(args, engine, precision)
    try:
        stats = upscale_video(model, args.input, args.output, params.video, progress=not args.no_progress)
    except VideoError as exc:
        raise SystemExit(f"srstyle upscale: {exc}") from None
    _print_video(args, stats, f"x{model.scale}, {model.source}")
    return 0


def _print_video(args: argparse.Namespace, stats, what: str) -> None:
    (w, h), (ow, oh) = stats.input_size, stats.output_size
    split = ", ".join(f"{k} {v:.1f} s" for k, v in stats.stage_seconds.items())
    print(f"{args.input} {w}x{h} -> {args.output} {ow}x{oh} ({what}): {stats.frames} frames "
          f"in {stats.seconds:.1f} s = {stats.fps:.1f} fps; busy time per stage: {split}; {stats.audio_packets} audio packets copied")


def _upscale(args: argparse.Namespace) -> int:
    from .io import save_image
    from .predict import ImageError, decode_image
    from .video import is_video

    _check_output(args)
    if is_video(args.input):
        return _upscale_video(args)
    try:
        rgb = decode_image(args.input, max_pixels=args.max_pixels)
    except ImageError as exc:
        raise SystemExit(f"srstyle upscale: {exc}") from None
    _, engine, precision = _settings(args)
    model = _load_model(args, engine, precision)
    try:
        result = model.upscale(rgb, tile=args.tile, overlap=args.overlap, ensemble=args.ensemble,
                               max_output_pixels=args.max_output_pixels)
    except ImageError as exc:
        raise SystemExit(f"srstyle upscale: {str(exc).replace('image:', f'{args.input}:', 1)} (--max-output-pixels)") from None
    save_image(result, args.output)
    print(f"{args.input} {rgb.shape[1]}x{rgb.shape[0]} -> {args.output} {result.shape[1]}x{result.shape[0]} (x{model.scale}, {model.source})")
    return 0


def _stylize(args: argparse.Namespace) -> int:
    from .io import ImageError
    from .models.backbones import BackboneWeightsError
    from .paths import project_root
    from .stylize import StylizeError, style_function, stylize_file
    from .video import VideoError, is_video, stylize_video

    _check_output(args)
    params = _params(args)
    options = dict(root=project_root(), params=params, style=args.style, style_image=args.style_image,
                   method=args.method, model=args.model, preserve_color=args.preserve_color,
                   max_pixels=args.max_pixels, engine=params.engine)
    try:
        if is_video(args.input):
            if args.method == "gatys":
                raise StylizeError("--method gatys optimises one image for minutes; videos take fast or meta")
            if args.content_scale != 1.0:
                raise StylizeError("--content-scale applies to images; a video keeps its frame size")
            fn, done = style_function(**options)
            stats = stylize_video(fn, args.input, args.output, params.video, progress=not args.no_progress,
                                  label=done["method"])
            _print_video(args, stats, f"{done['method']}: {done['model']}")
            return 0
        done = stylize_file(args.input, args.output, content_scale=args.content_scale, **options)
    except (StylizeError, ImageError, VideoError, BackboneWeightsError, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"srstyle stylize: {exc}") from None
    print(f"{args.input} -> {done['output']} {done['size'][0]}x{done['size'][1]} ({done['method']}: {done['model']}, {done['seconds']} s)")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .models import MODELS, model_info

    for name in MODELS.names():
        print(model_info(name))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from .config import load_params
    from .paths import DataPaths, project_root
    from .data.style_data import StylePaths
    from .model_registry import promote_runs, promote_style

    root, params = project_root(), load_params(args.params)
    promote_runs(params, DataPaths(root), root, ship=args.ship)
    if args.style and (StylePaths(root).eval_dir / "metrics.json").is_file():  # style chain has run
        promote_style(params, StylePaths(root), root, ship=args.ship)
    return 0


def _export_champions(args: argparse.Namespace) -> int:
    from .config import load_params
    from .paths import project_root
    from .model_registry import export_champions

    written = export_champions(args.out, load_params(args.params).tracking, project_root())
    print("\n".join(written) or "no champion registered (run `dvc repro` first)")
    return 0 if written else 1


def _import_weights(args: argparse.Namespace) -> int:
    import json

    from .models.import_weights import WeightImportError, import_weights
    from .models.files import save_model_file

    kwargs = json.loads(args.kwargs) if args.kwargs else {}
    try:
        model = import_weights(args.model, args.scale, args.file, layout=args.layout, **kwargs)
    except WeightImportError as exc:
        raise SystemExit(f"srstyle import-weights: {args.file}: {exc}") from None
    save_model_file(Path(args.out), args.model, args.scale, kwargs, model, step=0)
    print(f"{args.file} -> {args.out} ({args.model} x{args.scale}, {sum(p.numel() for p in model.parameters())} parameters)")
    return 0


def _flatten(prefix: str, value) -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in _flatten(f"{prefix}.{k}", v)]
    return [(prefix, value)]


def profile_args(path: Path) -> list[str]:
    """`-S key=value` flags for `dvc exp run`, one per leaf of the profile (no spaces, shell-safe)."""
    import json

    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: a profile is a mapping of params.yaml keys to values")
    flags = []
    for key, value in data.items():
        for leaf, v in _flatten(key, value):
            text = json.dumps(v, separators=(",", ":")) if isinstance(v, (list, bool)) or v is None else str(v)
            flags += ["-S", f"{leaf}={text}"]
    return flags


def _profile_args(args: argparse.Namespace) -> int:
    print(" ".join(profile_args(Path(args.profile))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srstyle", description=__doc__)
    parser.add_argument("--version", action="version", version=f"srstyle {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("upscale", help="super-resolve a photo or a video (Y by the model, CbCr by bicubic)")
    up.add_argument("input", help="input image (PNG, JPEG, BMP, TIFF, WebP) or video (.mp4, .mkv, .mov, .webm, .avi)")
    up.add_argument("output", help="output image (.png, .jpg, .webp) for an image; .mp4/.mkv for a video (audio is copied)")
    up.add_argument("--model", required=True, help="an .onnx file, a trainer model.pt, or an MLflow URI (runs:/..., "
                    "models:/sr-x3@champion: the project's store from params.yaml `tracking:` unless MLFLOW_TRACKING_URI)")
    up.add_argument("--threads", type=int, default=0, help="inference threads per convolution (0 = default)")
    up.add_argument("--max-pixels", type=int, default=40_000_000, help="refuse inputs larger than this")
    up.add_argument("--max-output-pixels", type=int, default=160_000_000,
                    help="refuse outputs larger than this (the uint8 output is held in memory: 3 bytes/pixel)")
    up.add_argument("--tile", type=int, default=512, help="LR tile side for bounded-memory inference (0 = whole image)")
    up.add_argument("--overlap", type=int, default=None, help="LR context per tile side (default: the model's receptive radius)")
    up.add_argument("--ensemble", action="store_true", help="x8 geometric self-ensemble (EDSR+ style; 8x slower)")
    up.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], default=None,
                    help="the precision of an .onnx model (int8: its exported .int8.onnx; bf16: OpenVINO; default: "
                         "engine.precision in params.yaml; auto: measured, see README)")
    up.add_argument("--backend", choices=["auto", "onnxruntime", "openvino"], default=None,
                    help="inference backend (default: engine.backend in params.yaml)")
    up.add_argument("--params", default="params.yaml", help="engine/video/tracking settings (defaults when the file is absent)")
    up.add_argument("--no-progress", action="store_true", help="video: no progress bar")
    up.set_defaults(func=_upscale)

    pro = sub.add_parser("promote", help="register the runs' models in MLflow and move `champion` if a challenger wins")
    pro.add_argument("--params", default="params.yaml")
    pro.add_argument("--ship", action=argparse.BooleanOptionalAction, default=None,
                     help="--ship: this run is meant to ship, champion may move (e.g. after `dvc exp apply`); "
                          "--no-ship: challengers only. Default: ships unless inside `dvc exp run` or SRSTYLE_SHIP=0")
    pro.add_argument("--style", action=argparse.BooleanOptionalAction, default=True,
                     help="also register/promote the style models (style-<name>, style-meta)")
    pro.set_defaults(func=_promote)

    exp = sub.add_parser("export-champions", help="copy the champion ONNX models out of the MLflow registry")
    exp.add_argument("--out", default="serve_models")
    exp.add_argument("--params", default="params.yaml")
    exp.set_defaults(func=_export_champions)

    imp = sub.add_parser("import-weights", help="convert official pretrained weights into a model.pt")
    imp.add_argument("model", help="architecture name (edsr, srresnet, espcn, ...)")
    imp.add_argument("file", help="the released state dict (.pt/.pth)")
    imp.add_argument("--scale", type=int, required=True)
    imp.add_argument("--out", required=True, help="model.pt to write (usable by upscale, evaluate, export)")
    imp.add_argument("--layout", choices=["edsr", "ordered"], default=None, help="default: edsr for edsr, else ordered")
    imp.add_argument("--kwargs", default="", help='constructor arguments as JSON, e.g. \'{"config": "paper"}\'')
    imp.set_defaults(func=_import_weights)

    prof = sub.add_parser("profile-args", help="print `dvc exp run` -S flags for a params profile (e.g. profiles/paper.yaml)")
    prof.add_argument("profile")
    prof.set_defaults(func=_profile_args)

    sty = sub.add_parser("stylize", help="neural style transfer: a trained style, any painting (meta network) or Gatys")
    sty.add_argument("input", help="content image (PNG, JPEG, BMP, TIFF, WebP) or video (.mp4, .mkv, .mov, .webm, .avi)")
    sty.add_argument("output", help="output image (.png, .jpg, .webp) or video (.mp4/.mkv; audio is copied)")
    sty.add_argument("--style", help="a trained fast style (style.fast.styles), e.g. starry_night; with --method gatys/meta a painting name")
    sty.add_argument("--style-image", help="any painting: the meta network styles it in one pass (or Gatys with --method gatys)")
    sty.add_argument("--method", choices=["fast", "meta", "gatys"], default=None,
                     help="default: fast with --style, meta with --style-image")
    sty.add_argument("--model", default=None, help="a style model instead of the pipeline's: fast_<style>.onnx, "
                     "metanet.onnx (transformer.onnx beside it) or a trainer model.pt")
    sty.add_argument("--preserve-color", action="store_true", help="luminance-only transfer: keep the content's colours")
    sty.add_argument("--content-scale", type=float, default=1.0, help="resize the content by this factor first")
    sty.add_argument("--max-pixels", type=int, default=40_000_000,
                     help="refuse inputs (and, after --content-scale, network inputs) larger than this")
    sty.add_argument("--params", default="params.yaml")
    sty.add_argument("--no-progress", action="store_true", help="video: no progress bar")
    sty.set_defaults(func=_stylize)

    models = sub.add_parser("models", help="list registered architectures")
    models.set_defaults(func=_models)
    from .report import add_parser as add_report_parser  # `srstyle report` (srstyle/report.py)

    add_report_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .logs import setup_logging

    setup_logging("WARNING")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
