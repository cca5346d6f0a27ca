"""Static int8 quantisation (QDQ) of exported SR models, calibrated on LR patches from the patch store.

``<name>.onnx`` (fp32) -> ``<name>.int8.onnx``: onnxruntime's ``quant_pre_process`` (shape inference and
graph fusion), then ``quantize_static`` in QDQ format (QuantizeLinear/DequantizeLinear pairs around every
Conv, which onnxruntime fuses into integer kernels), per-channel int8 weights and uint8 activations by
default. Activation ranges come from running the fp32 model on real LR patches of the training store, so
the ranges are those the model meets on photographs (random inputs would give wrong Tanh ranges).

The PSNR cost is measured, not assumed: :func:`int8_report` evaluates both files with the evaluate stage's
protocol (PSNR/SSIM on BT.601 Y against HR) and the PSNR between their outputs.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from ..config import EngineConfig, Int8Config
from ..engine import variant_path

log = logging.getLogger(__name__)


class QuantizationError(ValueError):
    """Quantisation cannot run (no calibration data, a non-srstyle model); the message says why."""


def calibration_patches(store_dir: Path, count: int, seed: int = 0) -> np.ndarray:
    """``count`` LR patches (seeded choice, store order) from a patch store, as float32 [N,C,h,w] in [0,1]."""
    lr_file = Path(store_dir) / "lr.npy"
    if not lr_file.is_file():
        raise QuantizationError(f"{store_dir}: no patch store (lr.npy) to calibrate on; run the patches stage")
    lr = np.load(lr_file, mmap_mode="r")
    if len(lr) == 0:
        raise QuantizationError(f"{lr_file}: the patch store is empty")
    idx = np.sort(np.random.default_rng(seed).choice(len(lr), min(count, len(lr)), replace=False))
    x = np.asarray(lr[idx], dtype=np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2).copy()


def _reader(patches: np.ndarray, batch: int, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class PatchReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> dict | None:
            if self.i >= len(patches):
                return None
            chunk = np.ascontiguousarray(patches[self.i : self.i + batch])
            self.i += batch
            return {input_name: chunk}

        def rewind(self) -> None:
            self.i = 0

    return PatchReader()


def quantize_sr_onnx(fp32_path: Path, patches: np.ndarray, cfg: Int8Config, out_path: Path | None = None) -> Path:
    """Write the int8 QDQ variant of ``fp32_path`` (default ``<name>.int8.onnx`` beside it); return its path."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path = Path(fp32_path)
    out_path = Path(out_path) if out_path else variant_path(fp32_path, "int8")
    source = onnx.load(str(fp32_path))
    meta = {p.key: p.value for p in source.metadata_props}
    if "scale" not in meta:
        raise QuantizationError(f"{fp32_path}: not an srstyle export (no 'scale' in metadata_props)")
    channels = 1 if meta.get("color", "y") == "y" else 3
    if patches.ndim != 4 or patches.shape[1] != channels:
        raise QuantizationError(f"{fp32_path}: calibration patches {patches.shape} do not match {channels} channel(s)")
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[cfg.method]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="srstyle-quant-") as tmp:
        model_in = fp32_path
        if cfg.preprocess:
            model_in = Path(tmp) / "pre.onnx"
            quant_pre_process(str(fp32_path), str(model_in), skip_symbolic_shape=False)
        raw_out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(model_in), str(raw_out), _reader(patches, cfg.calibration_batch, source.graph.input[0].name),
            quant_format=QuantFormat.QDQ, per_channel=cfg.per_channel, activation_type=qtype[cfg.activation_type],
            weight_type=qtype[cfg.weight_type], calibrate_method=method, reduce_range=cfg.reduce_range,
            extra_options={"ActivationSymmetric": cfg.activation_type == "int8"},
        )
        proto = onnx.load(str(raw_out))
        del proto.metadata_props[:]
        meta.update({"precision": "int8", "quantization": f"static QDQ, {cfg.method} calibration on "
                     f"{len(patches)} LR patches, weights {cfg.weight_type}{' per-channel' if cfg.per_channel else ''}, "
                     f"activations {cfg.activation_type}{', reduce_range' if cfg.reduce_range else ''}", "fp32_file": fp32_path.name})
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.checker.check_model(proto)
        tmp_out = out_path.with_name(out_path.name + ".tmp")
        onnx.save(proto, str(tmp_out))
        os.replace(tmp_out, out_path)
    return out_path


def output_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB, peak 1.0) between two model outputs on the [0, 1] scale, after clipping as a saved image."""
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def int8_report(fp32_path: Path, int8_path: Path, validated_dir: Path, raw_dir: Path, engine: EngineConfig | None = None,
                *, max_pixels: int = 40_000_000) -> dict:
    """PSNR/SSIM of both precisions on the validation split (the evaluate protocol) and their agreement."""
    from ..evaluate.sr import evaluate_sr
    from ..inference import load_sr_model
    from ..io import load_rgb, read_json
    from ..resize import downscale_rgb, modcrop
    from ..color import rgb_to_y

    fp32 = load_sr_model(fp32_path, engine=engine)
    int8 = load_sr_model(int8_path, engine=engine)
    with tempfile.TemporaryDirectory(prefix="srstyle-int8-eval-") as tmp:
        m32 = evaluate_sr(fp32, validated_dir, raw_dir, Path(tmp) / "fp32", max_pixels=max_pixels)
        m8 = evaluate_sr(int8, validated_dir, raw_dir, Path(tmp) / "int8", max_pixels=max_pixels)
    agreement = []
    for m in (m for m in read_json(Path(validated_dir) / "manifest.json") if m["split"] == "val"):
        lr = downscale_rgb(modcrop(load_rgb(Path(raw_dir) / m["file"], max_pixels), fp32.scale), fp32.scale)
        x = (rgb_to_y(lr) / 255.0).astype(np.float32)[None, None] if fp32.color == "y" else \
            (lr.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        agreement.append(output_psnr(fp32.run(x), int8.run(x)))
    report = {
        "fp32_psnr": m32["psnr"], "int8_psnr": m8["psnr"], "int8_psnr_drop": round(m32["psnr"] - m8["psnr"], 4),
        "fp32_ssim": m32["ssim"], "int8_ssim": m8["ssim"], "int8_ssim_drop": round(m32["ssim"] - m8["ssim"], 4),
        "int8_vs_fp32_psnr": round(float(np.mean(agreement)), 3), "images": m32["images"],
        "fp32_bytes": Path(fp32_path).stat().st_size, "int8_bytes": Path(int8_path).stat().st_size,
    }
    return report


def export_int8(fp32_path: Path, patches_dir: Path, validated_dir: Path, raw_dir: Path, cfg: Int8Config, *,
                engine: EngineConfig | None = None, seed: int = 0, max_pixels: int = 40_000_000) -> dict:
    """The export stage's int8 step: calibrate, quantise, evaluate both; writes ``int8.json`` beside the model.

    ``patches_dir`` is the patch store root (``data/patches``); the calibration patches come from the
    training store of the model's colour mode and scale.
    """
    import onnx

    from ..data.patches import store_name
    from ..io import write_json

    fp32_path = Path(fp32_path)
    meta = {p.key: p.value for p in onnx.load(str(fp32_path), load_external_data=False).metadata_props}
    store = Path(patches_dir) / "train" / store_name(meta.get("color", "y"), int(meta["scale"]))
    patches = calibration_patches(store, cfg.calibration_patches, seed)
    int8_path = quantize_sr_onnx(fp32_path, patches, cfg)
    report = int8_report(fp32_path, int8_path, validated_dir, raw_dir, engine, max_pixels=max_pixels)
    report["calibration_patches"] = int(len(patches))
    if report["int8_psnr_drop"] > cfg.max_psnr_drop_db:
        log.warning("%s: int8 costs %.3f dB PSNR, more than export.int8.max_psnr_drop_db=%.3f", int8_path.name,
                    report["int8_psnr_drop"], cfg.max_psnr_drop_db)
    write_json(report, fp32_path.parent / "int8.json")  # a DVC metrics file: numbers only
    return {"file": int8_path.name, **report}
