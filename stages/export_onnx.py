"""DVC stage `export_onnx@<run>`: ONNX with dynamic N/H/W, onnx.checker + onnxruntime parity on an odd size,
logged as the run's `onnx_model`; then (export.int8.enabled) the static int8 QDQ variant calibrated on the
patch store, with the PSNR/SSIM of both precisions on the validation split in int8.json; then every variant
this machine runs (onnxruntime fp32/int8, OpenVINO fp32/bf16/int8) scored on the validation photos and on
scikit-learn's china/flower, drop and `usable` per variant in <run>.precision.json."""

from srstyle.pipeline_steps import stage_main
from srstyle.pipeline_steps.sr import export_run

if __name__ == "__main__":
    stage_main(export_run, name_from="runs")
