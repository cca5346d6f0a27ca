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
from ..engine import output_psnr, variant_path  # noqa: F401 - output_psnr: re-exported for older callers

log = logging.getLogger(__name__)


class QuantizationError(ValueError):
    """Quantisation cannot run (no calibration data, a non-srstyle model); the message says why."""


def calibration_patches(store_dir: Path, count: int, seed: int = 0) -> np.ndarray:
    """``count`` LR patches (seeded choice, store order) from a patch store, as float32 [N,C,h,w] in [0,1].
    A random-crop store (patches.crop: random) gives crops of its default size at seeded positions."""
    from ..data.datasets import open_store

    if not (Path(store_dir) / "lr.npy").is_file():
        raise QuantizationError(f"{store_dir}: no patch store (lr.npy) to calibrate on; run the patches stage")
    store = open_store(store_dir)
    if len(store) == 0:
        raise QuantizationError(f"{store_dir}: the patch store is empty")
    idx = np.sort(np.random.default_rng(seed).choice(len(store), min(count, len(store)), replace=False))
    return store.batch(idx)[0].numpy()


def _reader(patches: np.ndarray, batch: int, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    # equal batches: the histogram calibrators (percentile, entropy) stack the batches into one array
    batch = min(batch, len(patches))
    patches = patches[: len(patches) - len(patches) % batch]

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


def _end_convs(model_path: Path, which: str) -> list[str]:
    """Names of the first and/or last Conv of an SR graph (``which``: none, first, last, first_last)."""
    import onnx

    if which == "none":
        return []
    graph = onnx.load(str(model_path)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    picked = {"first": convs[:1], "last": convs[-1:], "first_last": convs[:1] + convs[-1:]}[which]
    return [n.name for n in picked]


def quantize_sr_onnx(fp32_path: Path, patches: np.ndarray, cfg: Int8Config, out_path: Path | None = None) -> Path:
    """Write the int8 QDQ variant of ``fp32_path`` (default ``<name>.int8.onnx`` beside it); return its path.

    ``cfg.float_convs`` keeps the first and/or last convolution in float (the input's or the output's
    rounding is then the only one there): a little accuracy for a little speed (see README, int8)."""
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
            # onnxruntime's symbolic shape inference cannot follow a data-dependent Resize (the bicubic residual of
            # the demo EDSR/SRGAN): it raises and dumps sym_shape_infer_temp.onnx into the working directory.
            # ONNX's own shape inference is enough for the QDQ pass of these convolutional graphs.
            has_resize = any(node.op_type == "Resize" for node in source.graph.node)
            quant_pre_process(str(fp32_path), str(model_in), skip_symbolic_shape=has_resize)
        raw_out = Path(tmp) / "int8.onnx"
        float_convs = _end_convs(model_in, cfg.float_convs)
        quantize_static(
            str(model_in), str(raw_out), _reader(patches, cfg.calibration_batch, source.graph.input[0].name),
            quant_format=QuantFormat.QDQ, per_channel=cfg.per_channel, activation_type=qtype[cfg.activation_type],
            weight_type=qtype[cfg.weight_type], calibrate_method=method, reduce_range=cfg.reduce_range,
            nodes_to_exclude=float_convs,
            extra_options={"ActivationSymmetric": cfg.activation_type == "int8", "CalibPercentile": cfg.percentile},
        )
        proto = onnx.load(str(raw_out))
        rewritten = tanh_as_sigmoid(proto) if cfg.tanh_as_sigmoid else 0
        pinned = pin_pixel_grid(proto) if cfg.pixel_grid else 0
        del proto.metadata_props[:]
        meta.update({"precision": "int8", "quantization": f"static QDQ, {cfg.method} calibration on "
                     f"{len(patches)} LR patches, weights {cfg.weight_type}{' per-channel' if cfg.per_channel else ''}, "
                     f"activations {cfg.activation_type}{', reduce_range' if cfg.reduce_range else ''}"
                     f"{f', {rewritten} Tanh as table-lookup Sigmoid' if rewritten else ''}"
                     f"{f', input/output on the 8-bit pixel grid ({pinned})' if pinned else ''}"
                     f"{f', float convs: {cfg.float_convs}' if float_convs else ''}", "fp32_file": fp32_path.name})
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.checker.check_model(proto)
        tmp_out = out_path.with_name(out_path.name + ".tmp")
        onnx.save(proto, str(tmp_out))
        os.replace(tmp_out, out_path)
    return out_path


def _rescale_bias(proto, conv, producers, inits, old_in_scale: float, new_in_scale: float, tag: str) -> None:
    """A QDQ Conv's int32 bias is quantised with scale input_scale * weight_scale (onnxruntime fuses the
    Conv into QLinearConv only when that holds): requantise it for a new input scale."""
    from onnx import numpy_helper

    dq_bias, dq_w = producers.get(conv.input[2]), producers.get(conv.input[1])
    if dq_bias is None or dq_bias.op_type != "DequantizeLinear" or dq_w is None:
        return
    q_bias = numpy_helper.to_array(inits[dq_bias.input[0]]).astype(np.float64)
    w_scale = numpy_helper.to_array(inits[dq_w.input[1]]).astype(np.float64)
    real = q_bias * old_in_scale * w_scale
    new_scale = (np.float64(new_in_scale) * w_scale).astype(np.float32)
    new_q = np.rint(real / new_scale.astype(np.float64)).astype(np.int32)
    proto.graph.initializer.append(numpy_helper.from_array(new_q, f"{tag}_bias_q"))
    proto.graph.initializer.append(numpy_helper.from_array(new_scale, f"{tag}_bias_scale"))
    dq_bias.input[0], dq_bias.input[1] = f"{tag}_bias_q", f"{tag}_bias_scale"
    if len(dq_bias.input) > 2:
        proto.graph.initializer.append(numpy_helper.from_array(np.zeros_like(new_q), f"{tag}_bias_zp"))
        dq_bias.input[2] = f"{tag}_bias_zp"


def tanh_as_sigmoid(proto) -> int:
    """Rewrite every quantised ``DQ -> Tanh -> Q -> DQ`` so onnxruntime runs it as a table lookup.

    onnxruntime fuses ``DQ -> Sigmoid -> Q`` into ``QLinearSigmoid`` (a 256-entry lookup on uint8), but
    leaves Tanh in float: dequantise, tanh, quantise over the whole 64-channel feature map, which costs
    almost half as much as the int8 convolution itself. tanh(x) = 2 sigmoid(2x) - 1 is exact and free:

    * the DequantizeLinear before it gets twice the scale (it now yields 2x);
    * Tanh becomes Sigmoid, quantised on the fixed grid scale 1/254, zero point 0 (sigmoid in [0, 1]);
    * the DequantizeLinear after it reads the same uint8 with scale 2/254 and zero point 127, which gives
      (q - 127) * 2/254 = 2 sigmoid - 1 = tanh back, so the next convolution needs no change, and its zero
      padding (onnxruntime pads with the zero point) is still tanh = 0.

    The activation grid becomes 2/254 over [-1, 1] instead of the calibrated range. Returns the count rewritten.
    """
    from onnx import numpy_helper

    nodes = list(proto.graph.node)
    producers = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {i.name: i for i in proto.graph.initializer}

    def const(name: str, value, dtype) -> str:
        proto.graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    count = 0
    for k, tanh in enumerate(n for n in nodes if n.op_type == "Tanh"):
        dq_a = producers.get(tanh.input[0])
        q_b = consumers.get(tanh.output[0], [])
        if dq_a is None or dq_a.op_type != "DequantizeLinear" or len(q_b) != 1 or q_b[0].op_type != "QuantizeLinear":
            continue
        q_b = q_b[0]
        dq_bs = consumers.get(q_b.output[0], [])
        if not dq_bs or any(d.op_type != "DequantizeLinear" for d in dq_bs) or len(consumers.get(dq_a.output[0], [])) != 1:
            continue
        zp_type = numpy_helper.to_array(inits[q_b.input[2]]).dtype if len(q_b.input) > 2 and q_b.input[2] in inits else None
        if zp_type != np.uint8:
            continue  # the fixed grid below is for uint8 activations
        scale_a = numpy_helper.to_array(inits[dq_a.input[1]])
        dq_a.input[1] = const(f"srstyle_tanh{k}_in_scale", scale_a * 2, scale_a.dtype)
        tanh.op_type = "Sigmoid"
        q_b.input[1] = const(f"srstyle_tanh{k}_sig_scale", 1 / 254, np.float32)
        q_b.input[2] = const(f"srstyle_tanh{k}_sig_zp", 0, np.uint8)
        old_scale = float(numpy_helper.to_array(inits[dq_bs[0].input[1]]))
        out_scale = const(f"srstyle_tanh{k}_out_scale", 2 / 254, np.float32)
        out_zp = const(f"srstyle_tanh{k}_out_zp", 127, np.uint8)
        for j, d in enumerate(dq_bs):
            d.input[1], d.input[2] = out_scale, out_zp
            for conv in consumers.get(d.output[0], []):
                if conv.op_type == "Conv" and len(conv.input) > 2:
                    _rescale_bias(proto, conv, producers, inits, old_scale, np.float32(2 / 254), f"srstyle_tanh{k}_{j}")
        count += 1
    # drop initializers nothing reads any more
    used = {i for n in proto.graph.node for i in n.input}
    keep = [i for i in proto.graph.initializer if i.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    return count


def pin_pixel_grid(proto) -> int:
    """Quantise the model's input and output on the 8-bit pixel grid (scale 1/255, zero point 0).

    Calibration gives the input a range like [0.06, 0.92] and so a scale that is not 1/255: 8-bit luma
    then gets rounded once more on the way in, and the output is rounded to a grid that is not the one the
    caller rounds to. With scale 1/255 the input of an 8-bit frame is represented exactly and the output's
    rounding *is* the 8-bit rounding the caller does (values outside [0, 1] are clipped either way).
    Returns how many of the two ends were pinned.
    """
    from onnx import numpy_helper

    nodes = list(proto.graph.node)
    producers = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {i.name: i for i in proto.graph.initializer}
    proto.graph.initializer.append(numpy_helper.from_array(np.array(1 / 255, np.float32), "srstyle_pixel_scale"))
    proto.graph.initializer.append(numpy_helper.from_array(np.array(0, np.uint8), "srstyle_pixel_zp"))

    def uint8_q(node) -> bool:
        return (len(node.input) > 2 and node.input[2] in inits
                and numpy_helper.to_array(inits[node.input[2]]).dtype == np.uint8)

    def pin(q, tag: str) -> bool:
        if not uint8_q(q):
            return False
        old = float(numpy_helper.to_array(inits[q.input[1]]))
        q.input[1], q.input[2] = "srstyle_pixel_scale", "srstyle_pixel_zp"
        for j, d in enumerate(consumers.get(q.output[0], [])):
            if d.op_type != "DequantizeLinear":
                return False
            d.input[1], d.input[2] = "srstyle_pixel_scale", "srstyle_pixel_zp"
            for conv in consumers.get(d.output[0], []):
                if conv.op_type == "Conv" and len(conv.input) > 2:
                    _rescale_bias(proto, conv, producers, inits, old, np.float32(1 / 255), f"srstyle_{tag}{j}")
        return True

    pinned = 0
    q_in = [n for n in consumers.get(proto.graph.input[0].name, []) if n.op_type == "QuantizeLinear"]
    if len(q_in) == 1 and pin(q_in[0], "in"):
        pinned += 1
    # output: walk back through data-movement ops to the last DequantizeLinear and its QuantizeLinear
    node = producers.get(proto.graph.output[0].name)
    while node is not None and node.op_type in ("DepthToSpace", "Reshape", "Transpose", "Identity"):
        node = producers.get(node.input[0])
    if node is not None and node.op_type == "DequantizeLinear":
        q_out = producers.get(node.input[0])
        if q_out is not None and q_out.op_type == "QuantizeLinear" and pin(q_out, "out"):
            pinned += 1
    used = {i for n in proto.graph.node for i in n.input}
    keep = [i for i in proto.graph.initializer if i.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    return pinned


def int8_report(fp32_path: Path, int8_path: Path, validated_dir: Path, raw_dir: Path, engine: EngineConfig | None = None,
                *, max_pixels: int = 40_000_000) -> dict:
    """PSNR/SSIM of both precisions on the validation split (the evaluate protocol) and their agreement."""
    from ..color import rgb_to_y
    from ..evaluate.sr import evaluate_sr
    from ..io import load_rgb, read_json
    from ..predict import SRPredictor
    from ..resize import downscale_rgb, modcrop

    # onnxruntime's two files, whatever engine.backend/precision say: this report is about the quantisation
    engine = (engine or EngineConfig()).model_copy(update={"backend": "onnxruntime"})
    fp32 = SRPredictor.from_onnx(fp32_path, engine, "fp32")
    int8 = SRPredictor.from_onnx(int8_path, engine, "int8")
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
