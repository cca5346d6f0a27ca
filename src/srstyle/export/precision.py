"""Every precision of an exported SR model evaluated like a model: PSNR on photos, drop against fp32.

The export stage runs each variant this machine can run through the prediction core
(:meth:`srstyle.predict.SRPredictor.from_onnx` with an explicit backend and precision):

* ``onnxruntime_fp32`` (the reference), ``onnxruntime_int8`` (``<name>.int8.onnx``);
* with OpenVINO installed: ``openvino_fp32``, ``openvino_int8`` and, where the CPU runs bf16 natively
  (AVX512-BF16 or AMX; elsewhere OpenVINO would compute in f32 and the score would say nothing about
  bf16), ``openvino_bf16``.

Each is scored with the evaluate stage's protocol (BT.601 Y, ``scale`` pixels shaved, antialiased bicubic
LR) on the validation photos *and* on photos the model never trained on (:mod:`srstyle.data.unseen`:
scikit-learn's and matplotlib's sample photos; the training photos are scikit-image's, see
:mod:`srstyle.data.fetch`). A variant's ``drop_db`` is the larger of its two PSNR drops against
onnxruntime fp32; it is ``usable`` only when ``drop_db <= export.max_drop_db``, and ``engine: auto``
(:mod:`srstyle.engine_auto`) never picks one that is not. ``agreement_db`` is the PSNR between its raw
output and fp32's on the validation LR images.

Written as ``<name>.precision.json`` beside the model (a DVC metrics file: numbers only).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import EngineConfig
from ..data.unseen import unseen_photos
from ..engine import output_psnr, openvino_core, openvino_has_bf16, variant_path

log = logging.getLogger(__name__)


def runnable_variants(fp32_path: Path | str) -> list[tuple[str, str]]:
    """The (backend, precision) pairs this machine can evaluate for ``fp32_path``."""
    has_int8 = variant_path(fp32_path, "int8").is_file()
    pairs = [("onnxruntime", "fp32")] + ([("onnxruntime", "int8")] if has_int8 else [])
    if openvino_core() is not None:
        pairs += [("openvino", "fp32")] + ([("openvino", "bf16")] if openvino_has_bf16() else [])
        pairs += [("openvino", "int8")] if has_int8 else []
    return pairs


def _lr_input(model, hr: np.ndarray) -> np.ndarray:
    from ..color import rgb_to_y
    from ..resize import downscale_rgb, modcrop

    lr = downscale_rgb(modcrop(hr, model.scale), model.scale)
    return (rgb_to_y(lr) / 255.0).astype(np.float32)[None, None] if model.color == "y" else \
        (lr.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]


def evaluate_precisions(fp32_path: Path | str, validated_dir: Path, raw_dir: Path, *, max_drop_db: float = 0.1,
                        engine: EngineConfig | None = None, max_pixels: int = 40_000_000,
                        variants: list[tuple[str, str]] | None = None) -> dict:
    """Score every runnable variant; write and return the record (see the module docstring)."""
    from ..evaluate.sr import evaluate_image
    from ..io import load_rgb, read_json, write_json
    from ..predict import SRPredictor

    fp32_path = Path(fp32_path)
    base = engine or EngineConfig()
    val = [(m["file"], load_rgb(Path(raw_dir) / m["file"], max_pixels))
           for m in read_json(Path(validated_dir) / "manifest.json") if m["split"] == "val"]
    unseen = unseen_photos()
    scores, outputs = {}, {}
    for backend, precision in variants or runnable_variants(fp32_path):
        key = f"{backend}_{precision}"
        cfg = base.model_copy(update={"backend": backend, "precision": precision})
        model = SRPredictor.from_onnx(fp32_path, cfg)
        psnr_val = round(float(np.mean([evaluate_image(model, hr)["psnr"] for _, hr in val])), 4) if val else None
        psnr_unseen = round(float(np.mean([evaluate_image(model, hr)["psnr"] for _, hr in unseen])), 4) if unseen else None
        outputs[key] = [model.run(_lr_input(model, hr)) for _, hr in val]
        scores[key] = {"psnr_val": psnr_val, "psnr_unseen": psnr_unseen}
        log.info("%s %s: PSNR %s dB on validation, %s dB on unseen photos", fp32_path.name, key, psnr_val, psnr_unseen)
    ref = scores["onnxruntime_fp32"]
    for key, s in scores.items():
        for part in ("val", "unseen"):
            s[f"drop_{part}_db"] = None if s[f"psnr_{part}"] is None else round(ref[f"psnr_{part}"] - s[f"psnr_{part}"], 4)
        drops = [d for d in (s["drop_val_db"], s["drop_unseen_db"]) if d is not None]
        s["drop_db"] = round(max(drops), 4) if drops else 0.0
        agreement = [output_psnr(a, b) for a, b in zip(outputs[key], outputs["onnxruntime_fp32"])]
        s["agreement_db"] = round(min(float(np.mean(agreement)), 999.0), 2) if agreement else None
        s["usable"] = int(key == "onnxruntime_fp32" or s["drop_db"] <= max_drop_db)
        if not s["usable"]:
            log.warning("%s %s: loses %.3f dB PSNR (> export.max_drop_db %.3f): marked unusable", fp32_path.name, key,
                        s["drop_db"], max_drop_db)
    int8 = variant_path(fp32_path, "int8")
    record = {"max_drop_db": max_drop_db, "images_val": len(val), "images_unseen": len(unseen),
              "fp32_bytes": fp32_path.stat().st_size, **({"int8_bytes": int8.stat().st_size} if int8.is_file() else {}),
              "variants": scores}
    from ..engine_auto import record_path

    write_json(record, record_path(fp32_path))
    return record


# --- style graphs ---------------------------------------------------------------------------------------------


def _longest(rgb: np.ndarray, longest: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = longest / max(h, w)
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                  Image.Resampling.LANCZOS))


def evaluate_style_precisions(onnx_dir: Path | str, fast_styles: list[str], paintings: list[Path], *,
                              min_agreement_db: float = 40.0, engine: EngineConfig | None = None,
                              size: int = 384, variants: list[tuple[str, str]] | None = None) -> dict[str, dict]:
    """Every variant of the style graphs in ``onnx_dir`` (``fast_<style>.onnx``; ``metanet.onnx`` with
    ``transformer.onnx``) against onnxruntime fp32, on photos no style network trained on (scikit-learn's
    china/flower at ``size`` longest side) and, for the meta network, ``paintings`` (held out of its training).

    A stylised image has no ground truth to lose PSNR against, so a style record has no ``drop_db``: a
    variant's ``agreement_db`` is the PSNR between its 8-bit output and fp32's (the worst image counts),
    and it is ``usable`` when that is at least ``min_agreement_db``. The meta network's two graphs are
    scored end to end (painting -> weights -> stylised photo) with one graph in the variant and the other in
    fp32: the painting encoder runs once per painting, the transformer once per image, so either may run
    in bf16 without the other. Returns {graph file name: record}; writes ``<graph>.precision.json``."""
    from ..io import load_rgb, write_json
    from ..predict.style import MetaStylePredictor, StylePredictor
    from ..engine_auto import record_path

    onnx_dir = Path(onnx_dir)
    base = engine or EngineConfig()
    photos = [(name, _longest(rgb, size)) for name, rgb in unseen_photos()]
    if not photos:
        log.warning("no unseen photos (scikit-learn and matplotlib missing): style precisions not evaluated")
        return {}
    art = [load_rgb(p) for p in paintings]
    # graph -> how to stylise the photos with that graph in the variant ``cfg`` (everything else in fp32)
    jobs = {f"fast_{s}.onnx": ("fast", onnx_dir / f"fast_{s}.onnx") for s in fast_styles}
    meta_pair = (onnx_dir / "metanet.onnx", onnx_dir / "transformer.onnx")
    if meta_pair[0].is_file() and art:
        jobs["metanet.onnx"] = ("metanet", meta_pair[0])
        jobs["transformer.onnx"] = ("transformer", meta_pair[1])
    reference = base.model_copy(update={"backend": "onnxruntime", "precision": "fp32"})
    meta_ref = MetaStylePredictor.from_onnx(*meta_pair, reference) if "metanet.onnx" in jobs else None

    def stylised(kind: str, path: Path, cfg: EngineConfig) -> list[np.ndarray]:
        if kind == "fast":
            model = StylePredictor.from_onnx(path, cfg)
            return [model.stylize(rgb) for _, rgb in photos]
        variant = MetaStylePredictor.from_onnx(*meta_pair, cfg)
        # the painting encoder runs once per painting, the transformer once per image: scored apart, so
        # one can run in bf16 while the other stays fp32
        encoder, transformer = (variant, meta_ref) if kind == "metanet" else (meta_ref, variant)
        weights = [encoder.weights(a) for a in art]
        return [transformer.stylize(rgb, weights=w) for w in weights for _, rgb in photos]

    records = {}
    for name, (kind, path) in jobs.items():
        outputs = {}
        for backend, precision in variants or runnable_variants(path):
            if precision == "int8":
                continue  # no int8 style graphs are exported
            outputs[f"{backend}_{precision}"] = stylised(kind, path, base.model_copy(update={"backend": backend,
                                                                                          "precision": precision}))
        ref = outputs["onnxruntime_fp32"]
        scores = {}
        for key, outs in outputs.items():
            agreement = min(output_psnr(a.astype(np.float32) / 255, b.astype(np.float32) / 255) for a, b in zip(outs, ref))
            diff = max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(outs, ref))
            scores[key] = {"agreement_db": round(min(agreement, 999.0), 2), "max_abs_diff_255": diff,
                           "usable": int(key == "onnxruntime_fp32" or agreement >= min_agreement_db)}
            if not scores[key]["usable"]:
                log.warning("%s %s: agrees with fp32 at %.1f dB < export.style_min_agreement_db %.1f: marked unusable",
                            name, key, agreement, min_agreement_db)
            log.info("%s %s: agreement with fp32 %.1f dB, max |diff| %d/255", name, key, agreement, diff)
        record = {"task": "style", "min_agreement_db": min_agreement_db, "images_unseen": len(photos),
                  "paintings": len(art) if kind != "fast" else 0, "size": size, "variants": scores}
        write_json(record, record_path(path))
        records[name] = record
    return records
